//! `litefs.yml`: the schema of LiteFS v0.5.14 (same keys, same defaults),
//! environment expansion, the search path, and validation.

use serde::Deserialize;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Why a configuration was not accepted. Every message is one line naming
/// the file, key or value at fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// No config file in any searched place.
    #[error("no config file found (searched {0})")]
    NotFound(String),
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// YAML that does not fit the schema (unknown key, wrong type, bad value).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
    /// A value that parses but cannot be used.
    #[error("config: {key}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The whole `litefs.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct Config {
    pub(crate) exit_on_error: bool,
    pub(crate) skip_sync: bool,
    pub(crate) strict_verify: bool,
    pub(crate) exec: Exec,
    pub(crate) data: DataConfig,
    pub(crate) fuse: FuseConfig,
    pub(crate) http: HttpConfig,
    pub(crate) proxy: ProxyConfig,
    pub(crate) lease: LeaseConfig,
    pub(crate) backup: BackupConfig,
    pub(crate) log: LogConfig,
    pub(crate) tracing: TracingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            exit_on_error: true,
            skip_sync: false,
            strict_verify: false,
            exec: Exec::default(),
            data: DataConfig::default(),
            fuse: FuseConfig::default(),
            http: HttpConfig::default(),
            proxy: ProxyConfig::default(),
            lease: LeaseConfig::default(),
            backup: BackupConfig::default(),
            log: LogConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

/// `exec`: one command string, or a list run in order (all but the last to
/// completion).
#[derive(Debug, Clone, Default)]
pub(crate) struct Exec(pub(crate) Vec<ExecCmd>);

/// One `exec` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ExecCmd {
    pub(crate) cmd: String,
    #[serde(default)]
    pub(crate) if_candidate: bool,
}

impl<'de> Deserialize<'de> for Exec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<ExecCmd>),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::One(cmd) if cmd.trim().is_empty() => Exec(Vec::new()),
            Raw::One(cmd) => Exec(vec![ExecCmd {
                cmd,
                if_candidate: false,
            }]),
            Raw::Many(v) => Exec(v),
        })
    }
}

/// `data`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct DataConfig {
    pub(crate) dir: PathBuf,
    pub(crate) compress: bool,
    #[serde(with = "go_duration")]
    pub(crate) retention: Duration,
    #[serde(with = "go_duration")]
    pub(crate) retention_monitor_interval: Duration,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: PathBuf::from("/var/lib/litefs"),
            compress: true,
            retention: Duration::from_secs(600),
            retention_monitor_interval: Duration::from_secs(60),
        }
    }
}

/// `fuse`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct FuseConfig {
    pub(crate) dir: PathBuf,
    pub(crate) allow_other: bool,
    pub(crate) debug: bool,
}

impl Default for FuseConfig {
    fn default() -> Self {
        FuseConfig {
            dir: PathBuf::from("/litefs"),
            allow_other: false,
            debug: false,
        }
    }
}

/// `http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct HttpConfig {
    pub(crate) addr: String,
    #[serde(with = "go_duration")]
    pub(crate) snapshot_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: ":20202".into(),
            snapshot_timeout: Duration::ZERO,
        }
    }
}

/// `proxy` (on when `target` is set).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct ProxyConfig {
    pub(crate) addr: String,
    pub(crate) target: String,
    pub(crate) db: String,
    #[serde(with = "go_duration")]
    pub(crate) max_lag: Duration,
    pub(crate) debug: bool,
    #[serde(with = "go_duration")]
    pub(crate) primary_redirect_timeout: Duration,
    pub(crate) passthrough: Vec<String>,
    pub(crate) always_forward: Vec<String>,
    #[serde(with = "go_duration")]
    pub(crate) read_timeout: Duration,
    #[serde(with = "go_duration")]
    pub(crate) read_header_timeout: Duration,
    #[serde(with = "go_duration")]
    pub(crate) write_timeout: Duration,
    #[serde(with = "go_duration")]
    pub(crate) idle_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            addr: String::new(),
            target: String::new(),
            db: String::new(),
            max_lag: Duration::from_secs(10),
            debug: false,
            primary_redirect_timeout: Duration::from_secs(5),
            passthrough: Vec::new(),
            always_forward: Vec::new(),
            read_timeout: Duration::ZERO,
            read_header_timeout: Duration::from_secs(10),
            write_timeout: Duration::ZERO,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// `lease.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LeaseType {
    /// A fixed primary.
    Static,
    /// Consul sessions.
    Consul,
}

/// `lease`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct LeaseConfig {
    #[serde(rename = "type")]
    pub(crate) kind: Option<LeaseType>,
    pub(crate) hostname: String,
    pub(crate) advertise_url: String,
    pub(crate) candidate: bool,
    pub(crate) promote: bool,
    #[serde(with = "go_duration")]
    pub(crate) reconnect_delay: Duration,
    #[serde(with = "go_duration")]
    pub(crate) demote_delay: Duration,
    pub(crate) databases: Vec<String>,
    pub(crate) consul: ConsulConfig,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            kind: None,
            hostname: String::new(),
            advertise_url: String::new(),
            candidate: true,
            promote: false,
            reconnect_delay: Duration::from_secs(1),
            demote_delay: Duration::from_secs(10),
            databases: Vec::new(),
            consul: ConsulConfig::default(),
        }
    }
}

/// `lease.consul`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct ConsulConfig {
    pub(crate) url: String,
    pub(crate) key: String,
    #[serde(with = "go_duration")]
    pub(crate) ttl: Duration,
    #[serde(with = "go_duration")]
    pub(crate) lock_delay: Duration,
}

impl Default for ConsulConfig {
    fn default() -> Self {
        ConsulConfig {
            url: String::new(),
            key: String::new(),
            ttl: Duration::from_secs(10),
            lock_delay: Duration::from_secs(1),
        }
    }
}

/// `backup`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct BackupConfig {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) path: String,
    pub(crate) url: String,
    pub(crate) cluster: String,
    pub(crate) auth_token: String,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            kind: String::new(),
            path: String::new(),
            url: "https://litefs.fly.io".into(),
            cluster: String::new(),
            auth_token: String::new(),
        }
    }
}

/// `log`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct LogConfig {
    pub(crate) format: String,
    pub(crate) timestamp: bool,
    pub(crate) debug: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            timestamp: false,
            debug: false,
        }
    }
}

/// `tracing` (LiteFS's rolling trace log; accepted, not yet written).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct TracingConfig {
    pub(crate) enabled: bool,
    pub(crate) path: String,
    pub(crate) max_size: u64,
    pub(crate) max_count: u64,
    pub(crate) compress: bool,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            enabled: true,
            path: String::new(),
            max_size: 64,
            max_count: 8,
            compress: true,
        }
    }
}

impl Config {
    /// Reads, expands (unless `expand` is false) and parses a config file.
    pub(crate) fn load(path: &Path, expand: bool) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path, expand)
    }

    /// Parses config text; `path` only names the source in errors.
    pub(crate) fn parse(text: &str, path: &Path, expand: bool) -> Result<Config, ConfigError> {
        let text = if expand {
            expand_env(text, &|k| std::env::var(k).ok())
        } else {
            text.to_owned()
        };
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let de = serde_norway::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let mut what = strip_location(&inner.to_string());
            // serde_norway prefixes the path of the enclosing mapping; we name the key.
            if let Some((parent, _)) = key.rsplit_once('.') {
                if let Some(rest) = what.strip_prefix(&format!("{parent}: ")) {
                    what = rest.to_owned();
                }
            }
            let what = if key.is_empty() || key == "." {
                what
            } else {
                format!("{key}: {what}")
            };
            let message = match inner.location() {
                Some(l) => format!("line {}: {what}", l.line()),
                None => what,
            };
            ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            }
        })
    }

    /// The embedded configuration behind `litefs mount -demo`: a static
    /// primary with its data and mount under `base`.
    pub(crate) fn embedded_default(base: &Path) -> Config {
        let mut c = Config::default();
        c.data.dir = base.join("data");
        c.fuse.dir = base.join("mnt");
        c.http.addr = "127.0.0.1:20202".into();
        c.lease.kind = Some(LeaseType::Static);
        c.lease.candidate = true;
        c.lease.hostname = "localhost".into();
        c.lease.advertise_url = "http://localhost:20202".into();
        c
    }

    /// Checks what parsing cannot: required keys and values that conflict.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.fuse.dir.as_os_str().is_empty() {
            return Err(invalid("fuse.dir", "required"));
        }
        if self.data.dir.as_os_str().is_empty() {
            return Err(invalid("data.dir", "required"));
        }
        let (f, d) = (normalize(&self.fuse.dir), normalize(&self.data.dir));
        if f == d {
            return Err(invalid(
                "fuse.dir",
                format!("must differ from data.dir ({})", self.data.dir.display()),
            ));
        }
        if f.starts_with(&d) || d.starts_with(&f) {
            return Err(invalid(
                "fuse.dir",
                format!(
                    "{} and data.dir {} must not contain each other",
                    self.fuse.dir.display(),
                    self.data.dir.display()
                ),
            ));
        }
        let Some(kind) = self.lease.kind else {
            return Err(invalid("lease.type", "required (static or consul)"));
        };
        if self.lease.candidate && !self.lease.databases.is_empty() {
            return Err(invalid(
                "lease.databases",
                "only allowed on non-candidate nodes",
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
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid(
                "log.format",
                format!("{:?}: expected text or json", self.log.format),
            ));
        }
        if !matches!(self.backup.kind.as_str(), "" | "file" | "litefs-cloud") {
            return Err(invalid(
                "backup.type",
                format!("{:?}: expected file or litefs-cloud", self.backup.kind),
            ));
        }
        Ok(())
    }
}

/// serde_norway appends " at line L column C"; we lead with the line instead.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Absolute, with `.` and `..` resolved lexically (the directories may not
/// exist yet).
fn normalize(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
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

/// The config file to use: `explicit` (which must exist), else the first of
/// `./litefs.yml`, `~/litefs.yml`, `/etc/litefs.yml`.
pub(crate) fn find_config(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    find_config_in(explicit, &cwd, home.as_deref(), Path::new("/etc"))
}

fn find_config_in(
    explicit: Option<&Path>,
    cwd: &Path,
    home: Option<&Path>,
    etc: &Path,
) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        return Err(ConfigError::Read {
            path: p.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let mut places = vec![cwd.join("litefs.yml")];
    if let Some(h) = home {
        places.push(h.join("litefs.yml"));
    }
    places.push(etc.join("litefs.yml"));
    if let Some(p) = places.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    Err(ConfigError::NotFound(
        places
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

/// Expands `$VAR`, `${VAR}` and the expressions `${ A == 'x' }`,
/// `${ A != "x" }`, `${ A == B }` (to `true`/`false`), as LiteFS does with Go's
/// `os.Expand`: an unset variable expands to nothing, and a `$` not followed
/// by a name or `{` is dropped along with the character after it only when
/// that is a special shell character; plain text is kept.
pub(crate) fn expand_env(text: &str, get: &dyn Fn(&str) -> Option<String>) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut lit = 0;
    while i < b.len() {
        if b[i] != b'$' || i + 1 >= b.len() {
            i += 1;
            continue;
        }
        out.push_str(&text[lit..i]);
        let rest = &text[i + 1..];
        if let Some(inner) = rest.strip_prefix('{') {
            if let Some(end) = inner.find('}') {
                out.push_str(&expand_braced(&inner[..end], get));
                i += 2 + end + 1;
            } else {
                // No closing brace: Go drops "${" and keeps the rest.
                i += 2;
            }
        } else {
            let n = rest
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            if n > 0 {
                out.push_str(&get(&rest[..n]).unwrap_or_default());
                i += 1 + n;
            } else {
                // A lone '$' before a non-name character is kept.
                out.push('$');
                i += 1;
            }
        }
        lit = i;
    }
    out.push_str(&text[lit..]);
    out
}

fn expand_braced(expr: &str, get: &dyn Fn(&str) -> Option<String>) -> String {
    for op in ["==", "!="] {
        if let Some((a, b)) = expr.split_once(op) {
            let value = |s: &str| {
                let s = s.trim();
                let quoted = (s.starts_with('\'') && s.ends_with('\''))
                    || (s.starts_with('"') && s.ends_with('"'));
                if quoted && s.len() >= 2 {
                    s[1..s.len() - 1].to_owned()
                } else {
                    get(s).unwrap_or_default()
                }
            };
            let eq = value(a) == value(b);
            return (if op == "==" { eq } else { !eq }).to_string();
        }
    }
    get(expr.trim()).unwrap_or_default()
}

/// Go's `time.ParseDuration` syntax: a sequence of decimal numbers with
/// units (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `1h30m`, `1.5s`; a bare
/// `0` is zero.
pub(crate) fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() || t.starts_with('-') {
        return Err(format!("invalid duration {s:?}"));
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {s:?}: missing unit"))?;
        if n == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let num: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("invalid duration {s:?}: unknown unit {unit:?}")),
        };
        total += num * scale;
        rest = &rest[u..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("invalid duration {s:?}"))
}

mod go_duration {
    use serde::Deserialize;
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => super::parse_go_duration(&s).map_err(serde::de::Error::custom),
            Raw::Int(0) => Ok(Duration::ZERO),
            Raw::Int(n) => Err(serde::de::Error::custom(format!(
                "invalid duration {n}: missing unit (e.g. {n}s)"
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("litefs.yml"), false)
    }

    #[test]
    fn example_file_parses_with_documented_defaults() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../litefs.yml.example"),
        )
        .expect("example");
        let c = parse(&text).expect("example parses");
        assert_eq!(c.lease.kind, Some(LeaseType::Static));
        assert_eq!(c.data.dir, PathBuf::from("/var/lib/litefs"));
        assert_eq!(c.fuse.dir, PathBuf::from("/litefs"));
        assert_eq!(c.data.retention, Duration::from_secs(600));
        assert_eq!(c.data.retention_monitor_interval, Duration::from_secs(60));
        assert_eq!(c.http.addr, ":20202");
        assert_eq!(c.proxy.max_lag, Duration::from_secs(10));
        assert_eq!(c.lease.consul.ttl, Duration::from_secs(10));
        assert!(c.exit_on_error && c.data.compress && c.lease.candidate);
        c.validate().expect("valid");
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let e = parse("lease:\n  type: static\ndtaa:\n  dir: /x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("dtaa"), "{e}");
        let e = parse("lease:\n  type: static\ndata:\n  dir: /x\n  retension: 1s\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 5") && e.contains("retension"), "{e}");
    }

    #[test]
    fn bad_durations_name_the_value() {
        let e = parse("lease:\n  type: static\ndata:\n  retention: 10 minutes\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("10 minutes"), "{e}");
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("250us"), Ok(Duration::from_micros(250)));
        for bad in ["", "10", "1x", "-1s", "s", "1.2.3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exec_string_or_list() {
        let c = parse("lease: {type: static}\nexec: myapp -addr :8081\n").unwrap();
        assert_eq!(c.exec.0.len(), 1);
        assert_eq!(c.exec.0[0].cmd, "myapp -addr :8081");
        let c = parse("lease: {type: static}\nexec:\n  - cmd: migrate\n    if-candidate: true\n  - cmd: serve\n").unwrap();
        assert_eq!(c.exec.0.len(), 2);
        assert!(c.exec.0[0].if_candidate && !c.exec.0[1].if_candidate);
    }

    #[test]
    fn environment_expansion() {
        let env = |k: &str| match k {
            "A" => Some("x".to_owned()),
            "B" => Some("x".to_owned()),
            "HOST" => Some("node1".to_owned()),
            _ => None,
        };
        assert_eq!(
            expand_env("dir: /data/$HOST/db", &env),
            "dir: /data/node1/db"
        );
        assert_eq!(expand_env("dir: ${HOST}x", &env), "dir: node1x");
        assert_eq!(expand_env("v: ${ A == 'x' }", &env), "v: true");
        assert_eq!(expand_env("v: ${ A != \"x\" }", &env), "v: false");
        assert_eq!(expand_env("v: ${ A == B }", &env), "v: true");
        assert_eq!(expand_env("v: ${ UNSET == '' }", &env), "v: true");
        assert_eq!(expand_env("v: [$UNSET]", &env), "v: []");
        assert_eq!(expand_env("price: 5$ and $", &env), "price: 5$ and $");
    }

    #[test]
    fn directories_must_be_distinct() {
        let base = "lease: {type: static}\n";
        let bad = [
            "fuse: {dir: /x/y}\ndata: {dir: /x/y}\n",
            "fuse: {dir: /x/y}\ndata: {dir: /x/y/}\n",
            "fuse: {dir: /x/y}\ndata: {dir: /x/./y}\n",
            "fuse: {dir: /x/y/mnt}\ndata: {dir: /x/y}\n",
            "fuse: {dir: /x}\ndata: {dir: /x/data}\n",
        ];
        for b in bad {
            let e = parse(&format!("{base}{b}"))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains("fuse.dir"), "{b}: {e}");
        }
        parse(&format!(
            "{base}fuse: {{dir: /x/mnt}}\ndata: {{dir: /x/data}}\n"
        ))
        .unwrap()
        .validate()
        .unwrap();
    }

    #[test]
    fn lease_type_is_required_and_checked() {
        let e = parse("data: {dir: /d}\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("lease.type"), "{e}");
        assert!(parse("lease: {type: etcd}\n").is_err());
        let e = parse("lease: {type: consul}\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("lease.consul.url"), "{e}");
    }

    #[test]
    fn search_order() {
        let d = tempfile::tempdir().unwrap();
        let (cwd, home, etc) = (
            d.path().join("cwd"),
            d.path().join("home"),
            d.path().join("etc"),
        );
        for p in [&cwd, &home, &etc] {
            std::fs::create_dir_all(p).unwrap();
        }
        assert!(matches!(
            find_config_in(None, &cwd, Some(&home), &etc),
            Err(ConfigError::NotFound(_))
        ));
        std::fs::write(etc.join("litefs.yml"), "").unwrap();
        assert_eq!(
            find_config_in(None, &cwd, Some(&home), &etc).unwrap(),
            etc.join("litefs.yml")
        );
        std::fs::write(home.join("litefs.yml"), "").unwrap();
        assert_eq!(
            find_config_in(None, &cwd, Some(&home), &etc).unwrap(),
            home.join("litefs.yml")
        );
        std::fs::write(cwd.join("litefs.yml"), "").unwrap();
        assert_eq!(
            find_config_in(None, &cwd, Some(&home), &etc).unwrap(),
            cwd.join("litefs.yml")
        );
        let missing = d.path().join("nope.yml");
        assert!(find_config_in(Some(&missing), &cwd, Some(&home), &etc).is_err());
    }
}
