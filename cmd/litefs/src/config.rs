//! `litefs.yml`: LiteFS v0.5.14's schema (same keys, same defaults),
//! environment expansion, the search path, and validation.
//!
//! Reading a config is [`find_config`], then [`Config::load`] (expansion,
//! strict parsing: an unknown key is an error naming it and its line), then
//! [`Config::validate`] (required keys and conflicts) and, just before
//! mounting, [`Config::check_dirs`].
//!
//! Like LiteFS (Go's YAML decoder), a key that is present but empty
//! (`proxy:` with every child commented out, `hostname:`) keeps its default.

pub(crate) mod duration;
mod error;
pub(crate) mod expand;
#[cfg(test)]
mod tests;

pub(crate) use error::ConfigError;

use duration::GoDuration;
use error::invalid;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Defines one mapping of the file: the struct (fields documented, defaults
/// written next to them) and its `Deserialize`, which goes through a private
/// mirror struct whose fields are all `Option`s so that a missing *or null*
/// key keeps the default, as Go's YAML decoder does. Unknown keys are an
/// error (`deny_unknown_fields`); keys are the field names in kebab-case, or
/// the literal after `as`. `[T]` after a type deserializes through `T` and
/// converts with `Into`.
macro_rules! section {
    (
        $(#[$meta:meta])*
        struct $name:ident via $raw:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident $(as $key:literal)? : $ty:ty $([$via:ty])? = $default:expr,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) struct $name {
            $( $(#[$fmeta])* pub(crate) $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case", expecting = "a mapping")]
        struct $raw {
            $( $(#[serde(rename = $key)])? $field: Option<section!(@ty $ty $(, $via)?)>, )*
        }

        impl<'de> Deserialize<'de> for $name {
            #[allow(clippy::useless_conversion)]
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let mut out = Self::default();
                if let Some(raw) = Option::<$raw>::deserialize(d)? {
                    $( if let Some(v) = raw.$field { out.$field = v.into(); } )*
                }
                Ok(out)
            }
        }
    };
    (@ty $ty:ty) => { $ty };
    (@ty $ty:ty, $via:ty) => { $via };
}

section! {
    /// The whole `litefs.yml`. `Config::default()` is LiteFS's `NewConfig()`:
    /// every default, and no lease type (which [`Config::validate`] requires).
    struct Config via RawConfig {
        /// `exit-on-error`: exit with status 1 when start-up fails; when
        /// false, stay up and log the error (default true).
        exit_on_error: bool = true,
        /// `skip-sync`: start the proxy and exec without waiting to be in sync
        /// with the primary (default false).
        skip_sync: bool = false,
        /// `strict-verify`: recompute the full database checksum after every
        /// commit (slow; for tests; default false).
        strict_verify: bool = false,
        /// `exec`: the commands to run once the node is ready (default none).
        exec: Exec = Exec::default(),
        /// `data`: where databases and LTX files are stored.
        data: DataConfig = DataConfig::default(),
        /// `fuse`: the mount.
        fuse: FuseConfig = FuseConfig::default(),
        /// `http`: the node API server.
        http: HttpConfig = HttpConfig::default(),
        /// `proxy`: the HTTP proxy in front of the application.
        proxy: ProxyConfig = ProxyConfig::default(),
        /// `lease`: who is primary.
        lease: LeaseConfig = LeaseConfig::default(),
        /// `backup`: the backup service.
        backup: BackupConfig = BackupConfig::default(),
        /// `log`: log output.
        log: LogConfig = LogConfig::default(),
        /// `tracing`: the rolling on-disk trace log.
        tracing: TracingConfig = TracingConfig::default(),
    }
}

/// `exec`: in YAML either one command string, or a list of
/// `{cmd, if-candidate}` mappings run in order (all but the last to
/// completion). An empty string or an empty list means no command.
///
/// It dereferences to `Vec<ExecCmd>` (`config.exec.first()`,
/// `config.exec.iter()`); the field `.0` is the same vector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Exec(pub(crate) Vec<ExecCmd>);

impl Deref for Exec {
    type Target = Vec<ExecCmd>;
    fn deref(&self) -> &Vec<ExecCmd> {
        &self.0
    }
}

impl DerefMut for Exec {
    fn deref_mut(&mut self) -> &mut Vec<ExecCmd> {
        &mut self.0
    }
}

impl From<Vec<ExecCmd>> for Exec {
    fn from(v: Vec<ExecCmd>) -> Exec {
        Exec(v)
    }
}

/// One `exec` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a mapping with cmd and if-candidate"
)]
pub(crate) struct ExecCmd {
    /// `cmd`: the command line, split into words shell-style by the runner
    /// (required).
    pub(crate) cmd: String,
    /// `if-candidate`: run it only on a node that may become primary
    /// (default false).
    #[serde(default)]
    pub(crate) if_candidate: bool,
}

impl<'de> Deserialize<'de> for Exec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ExecVisitor)
    }
}

/// Visits `exec` without `#[serde(untagged)]`, so that errors inside a list
/// entry (an unknown key, a missing `cmd`) keep their own message and line.
struct ExecVisitor;

impl<'de> Visitor<'de> for ExecVisitor {
    type Value = Exec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command string or a list of {cmd, if-candidate} mappings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Exec, E> {
        if v.trim().is_empty() {
            return Ok(Exec::default());
        }
        Ok(Exec(vec![ExecCmd {
            cmd: v.to_owned(),
            if_candidate: false,
        }]))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Exec, E> {
        Ok(Exec::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Exec, A::Error> {
        let mut v = Vec::new();
        while let Some(cmd) = seq.next_element::<ExecCmd>()? {
            v.push(cmd);
        }
        Ok(Exec(v))
    }
}

section! {
    /// `data`: LiteFS's own storage.
    struct DataConfig via RawDataConfig {
        /// `dir`: databases, LTX files and node state (default
        /// `/var/lib/litefs`; must not be inside `fuse.dir` nor contain it).
        dir: PathBuf = PathBuf::from("/var/lib/litefs"),
        /// `compress`: LZ4-compress LTX files (default true).
        compress: bool = true,
        /// `retention`: how long LTX files are kept; the newest is always
        /// kept (default 10m).
        retention: Duration [GoDuration] = Duration::from_secs(10 * 60),
        /// `retention-monitor-interval`: how often retention runs (default 1m).
        retention_monitor_interval: Duration [GoDuration] = Duration::from_secs(60),
    }
}

section! {
    /// `fuse`: the mount point.
    struct FuseConfig via RawFuseConfig {
        /// `dir`: where applications open databases (default `/litefs`;
        /// must differ from `data.dir`).
        dir: PathBuf = PathBuf::from("/litefs"),
        /// `allow-other`: let users other than the one running litefs use the
        /// mount (default false).
        allow_other: bool = false,
        /// `debug`: log every FUSE request (default false).
        debug: bool = false,
        /// `passthrough` (litefs-rs only): hand WAL, WAL-index and journal
        /// I/O to the kernel where it supports FUSE passthrough, falling back to
        /// classic FUSE I/O with a logged warning (default true).
        passthrough: bool = true,
        /// `capture-interval` (litefs-rs only): with passthrough, how often
        /// commits are captured when nothing forces it sooner (a `-pos`
        /// read, a checkpoint, the WAL's last close); it bounds replication
        /// delay at the cost of one WAL-index read per tick (default 1ms).
        capture_interval: Duration [GoDuration] = Duration::from_millis(1),
    }
}

section! {
    /// `http`: the node API (replication, export/import, info, metrics).
    struct HttpConfig via RawHttpConfig {
        /// `addr`: listen address (default `:20202`).
        addr: String = ":20202".to_owned(),
        /// `auth-token` (litefs-rs only): a shared secret every API request
        /// must carry as `Authorization: Bearer <token>`, and that this
        /// node sends to others; `LITEFS_AUTH_TOKEN` in the environment
        /// sets it too. Empty (the default) leaves the API open, as LiteFS's
        /// is, so LiteFS nodes can join.
        auth_token: String = String::new(),
        /// `snapshot-timeout`: time limit for sending one snapshot to a
        /// replica; zero means `data.retention` (default 0).
        snapshot_timeout: Duration [GoDuration] = Duration::ZERO,
        /// `debug` (litefs-rs only): serve `/debug/vars` (internal state as
        /// JSON); off (the default), every `/debug/` path answers 404.
        debug: bool = false,
    }
}

section! {
    /// `proxy`: the HTTP proxy in front of the application, on when `target`
    /// is set.
    struct ProxyConfig via RawProxyConfig {
        /// `addr`: listen address (required with `target`).
        addr: String = String::new(),
        /// `target`: the application's address, e.g. `localhost:8081`.
        target: String = String::new(),
        /// `db`: the database whose position decides consistency (required
        /// with `target`).
        db: String = String::new(),
        /// `max-lag`: replication lag above which the node reports itself
        /// unhealthy (default 10s).
        max_lag: Duration [GoDuration] = Duration::from_secs(10),
        /// `debug`: log every proxied request (default false).
        debug: bool = false,
        /// `primary-redirect-timeout`: how long a write waits for a primary
        /// to be known (default 5s).
        primary_redirect_timeout: Duration [GoDuration] = Duration::from_secs(5),
        /// `passthrough`: path globs (`*` only, anchored) sent straight to
        /// the target (default none).
        passthrough: Vec<String> = Vec::new(),
        /// `always-forward`: path globs always sent to the primary (default
        /// none).
        always_forward: Vec<String> = Vec::new(),
        /// `forward` (ours): on a replica, stream writes to the primary's
        /// proxy instead of answering `fly-replay` (default false).
        forward: bool = false,
        /// `read-timeout`: the whole request, body included (default 0:
        /// none).
        read_timeout: Duration [GoDuration] = Duration::ZERO,
        /// `read-header-timeout`: a request's headers (default 10s).
        read_header_timeout: Duration [GoDuration] = Duration::from_secs(10),
        /// `write-timeout`: from a request's headers to the end of its
        /// response (default 0: none).
        write_timeout: Duration [GoDuration] = Duration::ZERO,
        /// `idle-timeout`: a kept-alive connection between requests
        /// (default 30s).
        idle_timeout: Duration [GoDuration] = Duration::from_secs(30),
    }
}

/// `lease.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LeaseType {
    /// `static`: a fixed primary (the node with `candidate: true`).
    Static,
    /// `consul`: leader election with Consul sessions.
    Consul,
}

impl LeaseType {
    /// The name used in `litefs.yml`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LeaseType::Static => "static",
            LeaseType::Consul => "consul",
        }
    }
}

section! {
    /// `lease`: how the primary is chosen.
    struct LeaseConfig via RawLeaseConfig {
        /// `type`: `static` or `consul`; no default, required by
        /// [`Config::validate`].
        kind as "type": Option<LeaseType> [LeaseType] = None,
        /// `hostname`: the name replicas show in `.primary` (default empty;
        /// consul then uses the OS hostname).
        hostname: String = String::new(),
        /// `advertise-url`: the URL other nodes reach this node's API at
        /// (default empty; consul then uses `http://HOSTNAME:PORT`; for a
        /// static replica, the primary's URL).
        advertise_url: String = String::new(),
        /// `candidate`: whether this node may become primary; with a static
        /// lease, whether it is the primary (default true).
        candidate: bool = true,
        /// `promote`: take the lease once caught up (default false).
        promote: bool = false,
        /// `reconnect-delay` (default 1s).
        reconnect_delay: Duration [GoDuration] = Duration::from_secs(1),
        /// `demote-delay`: how long a demoted node waits before trying to
        /// become primary again (default 10s).
        demote_delay: Duration [GoDuration] = Duration::from_secs(10),
        /// `databases`: replicate only these (replicas only; default all).
        databases: Vec<String> = Vec::new(),
        /// `consul`: settings for `type: consul`.
        consul: ConsulConfig = ConsulConfig::default(),
    }
}

section! {
    /// `lease.consul`.
    struct ConsulConfig via RawConsulConfig {
        /// `url`: the Consul agent (required with `type: consul`).
        url: String = String::new(),
        /// `key`: the lease key (required with `type: consul`).
        key: String = String::new(),
        /// `ttl`: session TTL (default 10s).
        ttl: Duration [GoDuration] = Duration::from_secs(10),
        /// `lock-delay`: Consul's lock delay after a session ends (default
        /// 1s).
        lock_delay: Duration [GoDuration] = Duration::from_secs(1),
    }
}

/// `backup.type`. A new kind of backup is a new variant here and a match arm
/// in the code that opens the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub(crate) enum BackupType {
    /// `""`: no backup.
    #[default]
    #[serde(rename = "")]
    None,
    /// `file`: LTX files copied to `backup.path`.
    #[serde(rename = "file")]
    File,
    /// `litefs-cloud`: LiteFS Cloud at `backup.url` (also turned on by the
    /// `LITEFS_CLOUD_TOKEN` environment variable at mount time).
    #[serde(rename = "litefs-cloud")]
    LitefsCloud,
    /// `s3`: an S3-compatible bucket (`backup.bucket`, `backup.path` as
    /// the key prefix), in Litestream 0.5's S3 layout.
    #[serde(rename = "s3")]
    S3,
}

impl BackupType {
    /// The name used in `litefs.yml`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BackupType::None => "",
            BackupType::File => "file",
            BackupType::LitefsCloud => "litefs-cloud",
            BackupType::S3 => "s3",
        }
    }
}

section! {
    /// `backup`.
    struct BackupConfig via RawBackupConfig {
        /// `type` (default `""`: off).
        kind as "type": BackupType = BackupType::None,
        /// `path`: the directory for `type: file` (required with it).
        path: PathBuf = PathBuf::new(),
        /// `sync-interval` (ours): how often new transactions are written
        /// to the backup (default 1s, Litestream's).
        sync_interval: Duration [GoDuration] = Duration::from_secs(1),
        /// `levels` (ours, Litestream's key): compaction levels 1, 2, ...,
        /// each `{interval}`: how often it merges the new files of the level
        /// below (default 30s, 5m, 1h, Litestream's; `[]`: no compaction).
        levels: Vec<LevelConfig> = default_levels(),
        /// `snapshot` (ours, Litestream's keys): fresh snapshots and how
        /// long history is kept.
        snapshot: SnapshotConfig = SnapshotConfig::default(),
        /// `l0-retention` (ours): how long a compacted level-0 file is kept
        /// (default 5m, Litestream's).
        l0_retention: Duration [GoDuration] = Duration::from_secs(300),
        /// `bucket` (`type: s3`, required with it).
        bucket: String = String::new(),
        /// `region` (`type: s3`; default us-east-1).
        region: String = String::new(),
        /// `endpoint` (`type: s3`): an S3-compatible service's URL (empty:
        /// AWS).
        endpoint: String = String::new(),
        /// `access-key-id` (`type: s3`; default `AWS_ACCESS_KEY_ID`).
        access_key_id: String = String::new(),
        /// `secret-access-key` (`type: s3`; default
        /// `AWS_SECRET_ACCESS_KEY`).
        secret_access_key: String = String::new(),
        /// `force-path-style` (`type: s3`): path-style URLs (default true
        /// with an endpoint, as most S3-compatible services want).
        force_path_style: bool = true,
        /// `url`: LiteFS Cloud's endpoint (default `https://litefs.fly.io`).
        url: String = "https://litefs.fly.io".to_owned(),
        /// `cluster`: LiteFS Cloud cluster name.
        cluster: String = String::new(),
        /// `auth-token`: LiteFS Cloud token.
        auth_token: String = String::new(),
    }
}

section! {
    /// One entry of `backup.levels`.
    struct LevelConfig via RawLevelConfig {
        /// `interval`: how often this level compacts (required, > 0).
        interval: Duration [GoDuration] = Duration::ZERO,
    }
}

/// Litestream's compaction levels: 30 s, 5 min, 1 h.
fn default_levels() -> Vec<LevelConfig> {
    [30, 300, 3600]
        .into_iter()
        .map(|s| LevelConfig {
            interval: Duration::from_secs(s),
        })
        .collect()
}

section! {
    /// `backup.snapshot`.
    struct SnapshotConfig via RawSnapshotConfig {
        /// `interval`: how often a fresh snapshot is written when the
        /// database has changed (default 24h; 0: only the first).
        interval: Duration [GoDuration] = Duration::from_secs(24 * 3600),
        /// `retention`: how long snapshots, and the files restores from
        /// them need, are kept (default 24h; 0: forever).
        retention: Duration [GoDuration] = Duration::from_secs(24 * 3600),
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LogFormat {
    /// `text`: human-readable lines (default).
    #[default]
    Text,
    /// `json`: one JSON object per line.
    Json,
}

impl LogFormat {
    /// The name used in `litefs.yml`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

section! {
    /// `log`: logging to stderr.
    struct LogConfig via RawLogConfig {
        /// `format` (default text).
        format: LogFormat = LogFormat::Text,
        /// `timestamp`: include timestamps (default false).
        timestamp: bool = false,
        /// `debug`: debug-level logging (default false).
        debug: bool = false,
    }
}

section! {
    /// `tracing`: LiteFS's rolling on-disk trace log (written only when
    /// `path` is set).
    struct TracingConfig via RawTracingConfig {
        /// `enabled` (default true).
        enabled: bool = true,
        /// `path`: the log file (default empty: no trace log).
        path: PathBuf = PathBuf::new(),
        /// `max-size`: megabytes per file before rolling (default 64).
        max_size: u64 = 64,
        /// `max-count`: rolled files kept (default 8).
        max_count: u64 = 8,
        /// `compress`: gzip rolled files (default true).
        compress: bool = true,
    }
}

impl Config {
    /// Reads `path`, expands environment variables in it unless `expand_env`
    /// is false (`litefs mount -no-expand-env` passes false), and parses it
    /// with [`Config::parse`].
    ///
    /// Note the polarity: `true` means *expand*.
    pub(crate) fn load(path: &Path, expand_env: bool) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path, expand_env)
    }

    /// Parses config text (expanding the environment first when
    /// `expand_env`); `path` only names the source in errors. Keys left out
    /// keep their defaults; an empty file gives `Config::default()`. Does not
    /// validate: call [`Config::validate`].
    pub(crate) fn parse(text: &str, path: &Path, expand_env: bool) -> Result<Config, ConfigError> {
        let expanded;
        let text = if expand_env {
            expanded = expand::expand_env(text);
            expanded.as_str()
        } else {
            text
        };
        if is_blank_yaml(text) {
            return Ok(Config::default());
        }
        let de = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| error::from_yaml(path, e))
    }

    /// The configuration behind the one-command demo (no config file): a
    /// static lease with this node as the primary (hostname `localhost`,
    /// advertise URL `http://localhost:20202`), `data.dir = base_dir/data`,
    /// `fuse.dir = base_dir/mnt`, the API on `127.0.0.1:20202`, everything
    /// else default.
    pub(crate) fn embedded_default(base_dir: &Path) -> Config {
        let mut c = Config::default();
        c.data.dir = base_dir.join("data");
        c.fuse.dir = base_dir.join("mnt");
        c.http.addr = "127.0.0.1:20202".to_owned();
        c.lease.kind = Some(LeaseType::Static);
        c.lease.candidate = true;
        c.lease.hostname = "localhost".to_owned();
        c.lease.advertise_url = "http://localhost:20202".to_owned();
        c
    }

    /// Checks what parsing cannot: required keys and values that conflict.
    /// Returns the first problem, as one line naming the key. Relative
    /// directories are taken relative to the current directory. Directories
    /// need not exist (see [`Config::check_dirs`]).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        self.validate_in(&cwd)
    }

    /// [`Config::validate`] with relative directories taken relative to
    /// `cwd`.
    pub(crate) fn validate_in(&self, cwd: &Path) -> Result<(), ConfigError> {
        if self.fuse.dir.as_os_str().is_empty() {
            return Err(invalid("fuse.dir", "required"));
        }
        if self.data.dir.as_os_str().is_empty() {
            return Err(invalid("data.dir", "required"));
        }
        if self.fuse.capture_interval.is_zero() {
            return Err(invalid(
                "fuse.capture-interval",
                "must be greater than zero (e.g. 1ms)",
            ));
        }
        let fuse = normalize(cwd, &self.fuse.dir);
        let data = normalize(cwd, &self.data.dir);
        if fuse == data {
            return Err(invalid(
                "fuse.dir",
                format!(
                    "{} is the same directory as data.dir {}; they must differ",
                    self.fuse.dir.display(),
                    self.data.dir.display()
                ),
            ));
        }
        if fuse.starts_with(&data) {
            return Err(invalid(
                "fuse.dir",
                format!(
                    "{} must not be inside data.dir {}",
                    self.fuse.dir.display(),
                    self.data.dir.display()
                ),
            ));
        }
        if data.starts_with(&fuse) {
            return Err(invalid(
                "data.dir",
                format!(
                    "{} must not be inside fuse.dir {}",
                    self.data.dir.display(),
                    self.fuse.dir.display()
                ),
            ));
        }
        let Some(kind) = self.lease.kind else {
            return Err(invalid("lease.type", "required: static or consul"));
        };
        if self.lease.candidate && !self.lease.databases.is_empty() {
            return Err(invalid(
                "lease.databases",
                "not allowed on a candidate node (set lease.candidate: false)",
            ));
        }
        if kind == LeaseType::Static && !self.lease.candidate && self.lease.advertise_url.is_empty()
        {
            return Err(invalid(
                "lease.advertise-url",
                "required on a static replica (candidate: false): the primary's API URL, e.g. http://primary:20202",
            ));
        }
        if kind == LeaseType::Consul {
            if self.lease.consul.url.is_empty() {
                return Err(invalid(
                    "lease.consul.url",
                    "required with lease.type consul",
                ));
            }
            if self.lease.consul.key.is_empty() {
                return Err(invalid(
                    "lease.consul.key",
                    "required with lease.type consul",
                ));
            }
        }
        if !self.proxy.target.is_empty() {
            if self.proxy.addr.is_empty() {
                return Err(invalid("proxy.addr", "required when proxy.target is set"));
            }
            if self.proxy.db.is_empty() {
                return Err(invalid("proxy.db", "required when proxy.target is set"));
            }
        }
        match self.backup.kind {
            BackupType::None | BackupType::LitefsCloud => {}
            BackupType::S3 => {
                if self.backup.bucket.is_empty() {
                    return Err(invalid("backup.bucket", "required with backup.type s3"));
                }
            }
            BackupType::File => {
                if self.backup.path.as_os_str().is_empty() {
                    return Err(invalid("backup.path", "required with backup.type file"));
                }
            }
        }
        if self.backup.levels.len() > 8 {
            return Err(invalid(
                "backup.levels",
                format!(
                    "at most 8 levels (1 to 8), not {}",
                    self.backup.levels.len()
                ),
            ));
        }
        if let Some(i) = self.backup.levels.iter().position(|l| l.interval.is_zero()) {
            return Err(invalid(
                "backup.levels",
                format!("level {} needs an interval above 0", i + 1),
            ));
        }
        Ok(())
    }

    /// Checks the directories just before mounting: `fuse.dir`'s parent must
    /// be an existing directory (`fuse.dir` itself and `data.dir` are
    /// created by the mount). The error names the key and the path.
    pub(crate) fn check_dirs(&self) -> Result<(), ConfigError> {
        let dir = &self.fuse.dir;
        let parent = match dir.parent() {
            None => return Ok(()), // "/" (or empty: validate reports that)
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
        };
        match std::fs::metadata(parent) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(ConfigError::Dir {
                key: "fuse.dir",
                path: parent.to_path_buf(),
                reason: "parent is not a directory",
            }),
            Err(_) => Err(ConfigError::Dir {
                key: "fuse.dir",
                path: parent.to_path_buf(),
                reason: "parent directory does not exist",
            }),
        }
    }
}

/// Whether `text` has no YAML content (only blank lines, comments and
/// document markers): LiteFS treats such a file as all defaults, while the
/// YAML parser would report end of input.
fn is_blank_yaml(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    })
}

/// `p` made absolute against `cwd`, with `.` and `..` resolved lexically
/// (the directories may not exist yet; symbolic links are not followed).
fn normalize(cwd: &Path, p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in cwd.join(p).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The config file to use: `explicit` (from `-config`, which must exist),
/// else the first that exists of `./litefs.yml`, `$HOME/litefs.yml` and
/// `/etc/litefs.yml`, as an absolute path. None found is
/// [`ConfigError::NotFound`], listing the places searched.
pub(crate) fn find_config(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let home = std::env::var_os("HOME").map(PathBuf::from);
    find_config_in(explicit, &cwd, home.as_deref(), Path::new("/etc"))
}

/// [`find_config`] with the current directory, home directory (`None` or
/// empty: skipped) and `/etc` given.
pub(crate) fn find_config_in(
    explicit: Option<&Path>,
    cwd: &Path,
    home: Option<&Path>,
    etc: &Path,
) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        return match std::fs::metadata(p) {
            Ok(_) => Ok(p.to_path_buf()),
            Err(source) => Err(ConfigError::Read {
                path: p.to_path_buf(),
                source,
            }),
        };
    }
    let mut searched = vec![cwd.join("litefs.yml")];
    if let Some(h) = home.filter(|h| !h.as_os_str().is_empty()) {
        searched.push(h.join("litefs.yml"));
    }
    searched.push(etc.join("litefs.yml"));
    for p in &searched {
        // As LiteFS: only a file that does not exist moves the search on; one
        // that exists but cannot be read is reported by `Config::load`.
        match std::fs::metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            _ => return Ok(p.clone()),
        }
    }
    Err(ConfigError::NotFound { searched })
}
