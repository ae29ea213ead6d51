//! Backups in an S3-compatible bucket, in Litestream 0.5's S3 layout:
//! `<prefix>/<level as %04x>/<min>-<max>.ltx` (no `ltx/` segment), through
//! the `object_store` crate. File times are the objects' upload times (S3
//! cannot set them), a second at most after the transactions.

use crate::layout::{ReplicaFile, Storage, SNAPSHOT_LEVEL};
use crate::BackupError;
use futures_util::TryStreamExt;
use litefs_ltx::{format_file_name, parse_file_name, Checksum, Header, Pos, Txid};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStore, PutPayload};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where and how to reach the bucket (`backup.type: s3`).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// Key prefix of the backup (`backup.path`); each database under
    /// `<path>/<database>/`.
    pub path: String,
    /// Region (default `us-east-1`).
    pub region: String,
    /// Endpoint URL of an S3-compatible service (empty: AWS).
    pub endpoint: String,
    /// Credentials; empty: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub access_key_id: String,
    /// See `access_key_id`.
    pub secret_access_key: String,
    /// Path-style URLs (`endpoint/bucket/key`), as most S3-compatible
    /// services want; defaults to true with an endpoint.
    pub force_path_style: bool,
}

impl S3Options {
    /// A client for the bucket.
    pub fn client(&self) -> Result<Arc<AmazonS3>, BackupError> {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&self.bucket);
        b = b.with_region(if self.region.is_empty() {
            "us-east-1"
        } else {
            &self.region
        });
        if !self.endpoint.is_empty() {
            b = b
                .with_endpoint(&self.endpoint)
                .with_allow_http(self.endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(!self.force_path_style);
        }
        if !self.access_key_id.is_empty() {
            b = b
                .with_access_key_id(&self.access_key_id)
                .with_secret_access_key(&self.secret_access_key);
        }
        b.build().map(Arc::new).map_err(|e| BackupError::Remote {
            what: format!("s3://{}", self.bucket),
            message: e.to_string(),
        })
    }

    /// The backup of database `db`.
    pub fn replica(&self, db: &str) -> Result<S3Replica, BackupError> {
        let prefix = if self.path.trim_matches('/').is_empty() {
            db.to_owned()
        } else {
            format!("{}/{db}", self.path.trim_matches('/'))
        };
        S3Replica::new(self.client()?, &self.bucket, &prefix)
    }

    /// Names of the databases backed up under `path`.
    pub fn databases(&self) -> Result<Vec<String>, BackupError> {
        let client = self.client()?;
        let rt = runtime()?;
        let base = self.path.trim_matches('/').to_owned();
        let prefix = (!base.is_empty()).then(|| Key::from(base.as_str()));
        let metas: Vec<object_store::ObjectMeta> = rt
            .block_on(client.list(prefix.as_ref()).try_collect())
            .map_err(|e| remote(format!("list s3://{}/{base}", self.bucket), e))?;
        let mut names: Vec<String> = metas
            .iter()
            .filter_map(|m| {
                let key = m.location.as_ref();
                let rel = key
                    .strip_prefix(&base)
                    .unwrap_or(key)
                    .trim_start_matches('/');
                let mut parts: Vec<&str> = rel.split('/').collect();
                let name = parts.pop()?;
                let level = parts.pop()?;
                parse_file_name(name)?;
                (level.len() == 4
                    && u8::from_str_radix(level, 16).is_ok_and(|l| l <= SNAPSHOT_LEVEL))
                .then(|| parts.join("/"))
            })
            .filter(|n| !n.is_empty() && !n.split('/').any(|p| p == "retired"))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, BackupError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BackupError::Remote {
            what: "start an S3 client runtime".into(),
            message: e.to_string(),
        })
}

/// An object-store error, with a hint at the settings to check when the
/// bucket refused the credentials or does not exist.
fn remote(what: String, e: object_store::Error) -> BackupError {
    // The service's XML error body comes inside: one line for the log.
    let mut message = e
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let refused = matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
    ]
    .iter()
    .any(|code| message.contains(code));
    if refused {
        message.push_str(
            " (the bucket refused the credentials: check backup.access-key-id and backup.secret-access-key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
        );
    } else if message.contains("NoSuchBucket") {
        message.push_str(" (check backup.bucket)");
    }
    BackupError::Remote { what, message }
}

/// One database's backup under an S3 prefix.
pub struct S3Replica {
    client: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for S3Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl S3Replica {
    /// The backup at `s3://bucket/prefix`.
    pub fn new(
        client: Arc<AmazonS3>,
        bucket: &str,
        prefix: &str,
    ) -> Result<S3Replica, BackupError> {
        Ok(S3Replica {
            client,
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            rt: runtime()?,
        })
    }

    fn key(&self, rest: &str) -> Key {
        Key::from(format!("{}/{rest}", self.prefix))
    }

    fn url(&self, key: &Key) -> String {
        format!("s3://{}/{}", self.bucket, key)
    }
}

impl Storage for S3Replica {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn files(&self) -> Result<Vec<ReplicaFile>, BackupError> {
        let prefix = Key::from(self.prefix.as_str());
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.client.list(Some(&prefix)).try_collect())
            .map_err(|e| remote(format!("list {}", self.describe()), e))?;
        let mut out = Vec::new();
        for m in metas {
            let key = m.location.as_ref();
            let Some(rel) = key
                .strip_prefix(&self.prefix)
                .map(|r| r.trim_start_matches('/'))
            else {
                continue;
            };
            let Some((level, name)) = rel.split_once('/') else {
                continue;
            };
            if level.len() != 4 {
                continue;
            }
            let (Ok(level), Some((min, max))) =
                (u8::from_str_radix(level, 16), parse_file_name(name))
            else {
                continue;
            };
            if level > SNAPSHOT_LEVEL {
                continue;
            }
            out.push(ReplicaFile {
                level,
                min,
                max,
                path: PathBuf::from(self.url(&m.location)),
                time: SystemTime::from(m.last_modified),
            });
        }
        out.sort_by_key(|f| (f.level, f.min, f.max));
        Ok(out)
    }

    fn read(&self, file: &ReplicaFile) -> Result<Vec<u8>, BackupError> {
        let url = file.path.to_string_lossy().into_owned();
        let key = url
            .strip_prefix(&format!("s3://{}/", self.bucket))
            .map(Key::from)
            .ok_or_else(|| BackupError::Invalid(format!("{url}: not in this bucket")))?;
        let r = self
            .rt
            .block_on(async { self.client.get(&key).await?.bytes().await })
            .map_err(|e| remote(format!("get {url}"), e))?;
        Ok(r.to_vec())
    }

    fn write(&self, level: u8, header: &Header, bytes: &[u8]) -> Result<ReplicaFile, BackupError> {
        let key = self.key(&format!(
            "{level:04x}/{}",
            format_file_name(header.min_txid, header.max_txid)
        ));
        let payload = PutPayload::from(bytes.to_vec());
        self.rt
            .block_on(self.client.put(&key, payload))
            .map_err(|e| remote(format!("put {}", self.url(&key)), e))?;
        // Listings give an object's upload time.
        Ok(ReplicaFile {
            level,
            min: header.min_txid,
            max: header.max_txid,
            path: PathBuf::from(self.url(&key)),
            time: SystemTime::now(),
        })
    }

    fn read_pos(&self) -> Option<Pos> {
        let key = self.key("litefs-pos");
        let b = self
            .rt
            .block_on(async { self.client.get(&key).await?.bytes().await })
            .ok()?;
        let s = String::from_utf8_lossy(&b);
        let (t, c) = s.trim().split_once('/')?;
        Some(Pos {
            txid: Txid(u64::from_str_radix(t, 16).ok()?),
            post_apply_checksum: Checksum(u64::from_str_radix(c, 16).ok()?),
        })
    }

    fn write_pos(&self, pos: Pos) -> Result<(), BackupError> {
        let key = self.key("litefs-pos");
        let body = format!("{:016x}/{:016x}\n", pos.txid.0, pos.post_apply_checksum.0);
        self.rt
            .block_on(self.client.put(&key, PutPayload::from(body.into_bytes())))
            .map_err(|e| remote(format!("put {}", self.url(&key)), e))?;
        Ok(())
    }

    fn delete(&self, file: &ReplicaFile) -> Result<(), BackupError> {
        let url = file.path.to_string_lossy().into_owned();
        let key = url
            .strip_prefix(&format!("s3://{}/", self.bucket))
            .map(Key::from)
            .ok_or_else(|| BackupError::Invalid(format!("{url}: not in this bucket")))?;
        self.rt
            .block_on(self.client.delete(&key))
            .map_err(|e| remote(format!("delete {url}"), e))
    }

    fn retire(&self) -> Result<Option<PathBuf>, BackupError> {
        let files = self.files()?;
        if files.is_empty() {
            return Ok(None);
        }
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let dest = format!("retired/{ms}");
        for f in files {
            let from = Key::from(
                f.path
                    .to_string_lossy()
                    .strip_prefix(&format!("s3://{}/", self.bucket))
                    .unwrap_or_default(),
            );
            let to = self.key(&format!(
                "{dest}/{:04x}/{}",
                f.level,
                format_file_name(f.min, f.max)
            ));
            self.rt
                .block_on(async {
                    self.client.copy(&from, &to).await?;
                    self.client.delete(&from).await
                })
                .map_err(|e| remote(format!("move {} aside", self.url(&from)), e))?;
        }
        Ok(Some(PathBuf::from(self.url(&self.key(&dest)))))
    }
}
