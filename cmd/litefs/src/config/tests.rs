//! Unit tests of the config module.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::duration::parse_go_duration;
use super::expand::expand_env_with;
use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("litefs.yml"), false)
}

fn parse_err(text: &str) -> String {
    let e = parse(text).expect_err("should not parse").to_string();
    assert!(!e.contains('\n'), "one line: {e:?}");
    e
}

fn invalid_err(text: &str) -> String {
    let e = parse(text)
        .expect("parses")
        .validate_in(Path::new("/cwd"))
        .expect_err("should not validate")
        .to_string();
    assert!(!e.contains('\n'), "one line: {e:?}");
    e
}

fn valid(text: &str) -> Config {
    let c = parse(text).expect("parses");
    c.validate_in(Path::new("/cwd")).expect("valid");
    c
}

const STATIC: &str = "lease:\n  type: static\n";

#[test]
fn defaults_are_litefs_new_config() {
    let c = Config::default();
    assert!(c.exit_on_error && !c.skip_sync && !c.strict_verify);
    assert!(c.exec.is_empty());
    assert_eq!(c.data.dir, PathBuf::from("/var/lib/litefs"));
    assert!(c.data.compress);
    assert_eq!(c.data.retention, Duration::from_secs(600));
    assert_eq!(c.data.retention_monitor_interval, Duration::from_secs(60));
    assert_eq!(c.fuse.dir, PathBuf::from("/litefs"));
    assert!(!c.fuse.allow_other && !c.fuse.debug);
    assert_eq!(c.http.addr, ":20202");
    assert_eq!(c.http.snapshot_timeout, Duration::ZERO);
    assert!(!c.http.debug);
    let p = &c.proxy;
    assert!(p.addr.is_empty() && p.target.is_empty() && p.db.is_empty() && !p.debug);
    assert_eq!(p.max_lag, Duration::from_secs(10));
    assert_eq!(p.primary_redirect_timeout, Duration::from_secs(5));
    assert!(p.passthrough.is_empty() && p.always_forward.is_empty());
    assert_eq!(p.read_timeout, Duration::ZERO);
    assert_eq!(p.read_header_timeout, Duration::from_secs(10));
    assert_eq!(p.write_timeout, Duration::ZERO);
    assert_eq!(p.idle_timeout, Duration::from_secs(30));
    let l = &c.lease;
    assert_eq!(l.kind, None);
    assert!(l.hostname.is_empty() && l.advertise_url.is_empty());
    assert!(l.candidate && !l.promote && l.databases.is_empty());
    assert_eq!(l.reconnect_delay, Duration::from_secs(1));
    assert_eq!(l.demote_delay, Duration::from_secs(10));
    assert!(l.consul.url.is_empty() && l.consul.key.is_empty());
    assert_eq!(l.consul.ttl, Duration::from_secs(10));
    assert_eq!(l.consul.lock_delay, Duration::from_secs(1));
    let b = &c.backup;
    assert_eq!(b.kind, BackupType::None);
    assert_eq!(b.url, "https://litefs.fly.io");
    assert!(b.path.as_os_str().is_empty() && b.cluster.is_empty() && b.auth_token.is_empty());
    let levels: Vec<u64> = b.levels.iter().map(|l| l.interval.as_secs()).collect();
    assert_eq!(levels, [30, 300, 3600]);
    assert_eq!(b.snapshot.interval, Duration::from_secs(86400));
    assert_eq!(b.snapshot.retention, Duration::from_secs(86400));
    assert_eq!(b.l0_retention, Duration::from_secs(300));
    assert_eq!(c.log.format, LogFormat::Text);
    assert!(!c.log.timestamp && !c.log.debug);
    let t = &c.tracing;
    assert!(t.enabled && t.path.as_os_str().is_empty() && t.compress);
    assert_eq!((t.max_size, t.max_count), (64, 8));
}

#[test]
fn example_file_parses_to_the_documented_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../litefs.yml.example");
    let c = Config::load(&path, true).expect("example parses");
    let mut want = Config::default();
    want.lease.kind = Some(LeaseType::Static);
    assert_eq!(c, want);
    c.validate().expect("valid");
}

#[test]
fn empty_file_is_all_defaults_and_needs_a_lease_type() {
    for text in ["", "\n\n", "# nothing\n  # here\n", "---\n"] {
        assert_eq!(parse(text).unwrap(), Config::default(), "{text:?}");
        let e = invalid_err(text);
        assert!(e.contains("lease.type") && e.contains("required"), "{e}");
    }
}

#[test]
fn null_keys_keep_their_defaults() {
    let c = valid(
        "lease:\n  type: static\n  consul:\n  hostname:\nproxy:\n  # addr: x\ndata:\n  dir:\n  compress:\n  retention: ~\nexec:\n",
    );
    assert_eq!(c.data, DataConfig::default());
    assert_eq!(c.proxy, ProxyConfig::default());
    assert_eq!(c.lease.consul, ConsulConfig::default());
    assert!(c.exec.is_empty());
}

#[test]
fn unknown_top_level_key_names_key_and_line() {
    let e = parse_err("lease:\n  type: static\n\n# comment\ndtaa:\n  dir: /x\n");
    assert_eq!(
        e,
        "litefs.yml: line 5: unknown field \"dtaa\" (did you mean \"data\"?)"
    );
}

#[test]
fn unknown_nested_key_names_key_and_line() {
    let e = parse_err("lease:\n  type: static\ndata:\n  dir: /x\n  retension: 1s\n");
    assert_eq!(
        e,
        "litefs.yml: line 5: data: unknown field \"retension\" (did you mean \"retention\"?)"
    );
    let e = parse_err("lease:\n  type: consul\n  consul:\n    url: x\n    colour: red\n");
    assert_eq!(
        e,
        "litefs.yml: line 5: lease.consul: unknown field \"colour\""
    );
    let e = parse_err("exec:\n  - cmd: a\n  - cmd: b\n    if-candidat: true\n");
    assert!(
        e.starts_with("litefs.yml: line 4: exec[1]: unknown field \"if-candidat\""),
        "{e}"
    );
    match parse("fuse:\n  dri: /x\n").unwrap_err() {
        ConfigError::UnknownField {
            line,
            section,
            field,
            suggestion,
            ..
        } => {
            assert_eq!(line, Some(2));
            assert_eq!(section.as_deref(), Some("fuse"));
            assert_eq!(field, "dri");
            assert_eq!(suggestion.as_deref(), Some("dir"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_durations_name_key_and_value() {
    let e = parse_err("lease:\n  type: static\ndata:\n  retention: 10 minutes\n");
    assert_eq!(
        e,
        "litefs.yml: line 4: data.retention: invalid duration \"10 minutes\": unknown unit \" minutes\" (use ns, us, ms, s, m or h)"
    );
    let e = parse_err("lease:\n  type: static\n  reconnect-delay: soon\n");
    assert!(
        e.contains("line 3") && e.contains("lease.reconnect-delay") && e.contains("\"soon\""),
        "{e}"
    );
    let e = parse_err("proxy:\n  max-lag: 10\n");
    assert!(
        e.contains("line 2") && e.contains("proxy.max-lag") && e.contains("10s"),
        "{e}"
    );
    let e = parse_err("proxy:\n  idle-timeout: -5s\n");
    assert!(e.contains("proxy.idle-timeout") && e.contains("-5s"), "{e}");
    let e = parse_err("http:\n  snapshot-timeout: 1.5\n");
    assert!(
        e.contains("http.snapshot-timeout") && e.contains("1.5"),
        "{e}"
    );
    let e = parse_err("http:\n  snapshot-timeout: true\n");
    assert!(e.contains("http.snapshot-timeout"), "{e}");
}

#[test]
fn durations_in_yaml() {
    let c = valid(&format!(
        "{STATIC}http:\n  snapshot-timeout: 0\nproxy:\n  read-timeout: \"0\"\n  write-timeout: 0s\n  idle-timeout: 1h30m\n  max-lag: 1.5s\n  read-header-timeout: 250us\n"
    ));
    assert_eq!(c.http.snapshot_timeout, Duration::ZERO);
    assert_eq!(c.proxy.read_timeout, Duration::ZERO);
    assert_eq!(c.proxy.write_timeout, Duration::ZERO);
    assert_eq!(c.proxy.idle_timeout, Duration::from_secs(5400));
    assert_eq!(c.proxy.max_lag, Duration::from_millis(1500));
    assert_eq!(c.proxy.read_header_timeout, Duration::from_micros(250));
}

#[test]
fn go_duration_syntax() {
    let ok = [
        ("0", Duration::ZERO),
        ("+0", Duration::ZERO),
        ("-0", Duration::ZERO),
        ("0s", Duration::ZERO),
        ("-0s", Duration::ZERO),
        ("10s", Duration::from_secs(10)),
        ("1m", Duration::from_secs(60)),
        ("500ms", Duration::from_millis(500)),
        ("1h30m", Duration::from_secs(5400)),
        ("1h0m0s", Duration::from_secs(3600)),
        ("1.5s", Duration::from_millis(1500)),
        (".5s", Duration::from_millis(500)),
        ("1.s", Duration::from_secs(1)),
        ("+2m", Duration::from_secs(120)),
        ("250us", Duration::from_micros(250)),
        ("250\u{b5}s", Duration::from_micros(250)),
        ("250\u{3bc}s", Duration::from_micros(250)),
        ("7ns", Duration::from_nanos(7)),
        ("1.000000001s", Duration::from_nanos(1_000_000_001)),
        ("0.1h", Duration::from_secs(360)),
        ("1m1.5s2ms", Duration::from_millis(61_502)),
        ("2562047h", Duration::from_secs(2_562_047 * 3600)),
    ];
    for (s, want) in ok {
        assert_eq!(parse_go_duration(s), Ok(want), "{s:?}");
    }
    let bad = [
        "", "+", "-", "10", "s", ".s", "1x", "1.2.3s", "-1s", " 1s", "1s ", "1 s", "1S", "1sec",
        "3000000h", "1e3s",
    ];
    for s in bad {
        let e = parse_go_duration(s).expect_err(s);
        assert!(e.contains(&format!("{s:?}")), "{s:?}: {e}");
    }
    assert_eq!(
        parse_go_duration("10").unwrap_err(),
        "invalid duration \"10\": missing unit (e.g. \"10s\")"
    );
}

#[test]
fn exec_as_a_string() {
    let c = valid(&format!("{STATIC}exec: myapp -addr :8081\n"));
    assert_eq!(
        c.exec.0,
        vec![ExecCmd {
            cmd: "myapp -addr :8081".to_owned(),
            if_candidate: false
        }]
    );
    let c = valid(&format!("{STATIC}exec: \"\"\n"));
    assert!(c.exec.is_empty());
}

#[test]
fn exec_as_a_list() {
    let c = valid(&format!(
        "{STATIC}exec:\n  - cmd: myapp migrate\n    if-candidate: true\n  - cmd: \"myapp serve\"\n"
    ));
    assert_eq!(c.exec.len(), 2);
    assert_eq!(c.exec[0].cmd, "myapp migrate");
    assert!(c.exec[0].if_candidate);
    assert_eq!(c.exec[1].cmd, "myapp serve");
    assert!(!c.exec[1].if_candidate);
    let c = valid(&format!("{STATIC}exec: []\n"));
    assert!(c.exec.is_empty());
}

#[test]
fn bad_exec_is_named() {
    let e = parse_err("exec:\n  - if-candidate: true\n");
    assert!(e.contains("line 2") && e.contains("cmd"), "{e}");
    let e = parse_err("exec:\n  cmd: x\n");
    assert!(e.contains("line 2") && e.contains("exec"), "{e}");
    let e = parse_err("exec: 5\n");
    assert!(e.contains("line 1") && e.contains("exec"), "{e}");
}

#[test]
fn other_type_errors_name_key_and_line() {
    let e = parse_err("lease:\n  type: etcd\n");
    assert!(
        e.contains("line 2") && e.contains("lease.type") && e.contains("\"etcd\""),
        "{e}"
    );
    let e = parse_err("log:\n  format: xml\n");
    assert!(
        e.contains("line 2") && e.contains("log.format") && e.contains("\"xml\""),
        "{e}"
    );
    let e = parse_err("backup:\n  type: gcs\n");
    assert!(
        e.contains("line 2") && e.contains("backup.type") && e.contains("litefs-cloud"),
        "{e}"
    );
    let e = parse_err("fuse:\n  allow-other: maybe\n");
    assert!(
        e.contains("line 2") && e.contains("fuse.allow-other"),
        "{e}"
    );
    let e = parse_err("tracing:\n  max-count: -1\n");
    assert!(
        e.contains("line 2") && e.contains("tracing.max-count"),
        "{e}"
    );
    let e = parse_err("data: [1, 2]\n");
    assert!(e.contains("line 1") && e.contains("data"), "{e}");
}

#[test]
fn yaml_syntax_errors_name_the_line() {
    let e = parse_err("lease:\n  type: static\n bad indent: x\n");
    assert!(e.starts_with("litefs.yml: line 3: "), "{e}");
    let e = parse_err("data:\n  dir: \"unterminated\n");
    assert!(e.starts_with("litefs.yml: line "), "{e}");
}

#[test]
fn every_key_of_the_schema_is_accepted() {
    let c = valid(
        "exit-on-error: false\nskip-sync: true\nstrict-verify: true\n\
         exec: x\n\
         data: {dir: /d, compress: false, retention: 1s, retention-monitor-interval: 2s}\n\
         fuse: {dir: /f, allow-other: true, debug: true}\n\
         http: {addr: ':1', snapshot-timeout: 3s}\n\
         proxy: {addr: ':2', target: 't:3', db: a.db, max-lag: 4s, debug: true, \
           primary-redirect-timeout: 5s, passthrough: ['*.png'], always-forward: ['/w'], \
           read-timeout: 6s, read-header-timeout: 7s, write-timeout: 8s, idle-timeout: 9s}\n\
         lease: {type: consul, hostname: h, advertise-url: 'http://h:1', candidate: false, \
           promote: true, reconnect-delay: 10s, demote-delay: 11s, databases: [a.db], \
           consul: {url: 'http://c', key: k, ttl: 12s, lock-delay: 13s}}\n\
         backup: {type: litefs-cloud, path: /b, url: 'http://u', cluster: c, auth-token: t}\n\
         log: {format: json, timestamp: true, debug: true}\n\
         tracing: {enabled: false, path: /t, max-size: 1, max-count: 2, compress: false}\n",
    );
    assert!(!c.exit_on_error && c.skip_sync && c.strict_verify);
    assert_eq!(c.data.retention_monitor_interval, Duration::from_secs(2));
    assert_eq!(c.http.snapshot_timeout, Duration::from_secs(3));
    assert_eq!(c.proxy.passthrough, ["*.png"]);
    assert_eq!(c.proxy.idle_timeout, Duration::from_secs(9));
    assert_eq!(c.lease.kind, Some(LeaseType::Consul));
    assert_eq!(c.lease.databases, ["a.db"]);
    assert_eq!(c.lease.consul.lock_delay, Duration::from_secs(13));
    assert_eq!(c.backup.kind, BackupType::LitefsCloud);
    assert_eq!(c.backup.auth_token, "t");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.format.as_str(), "json");
    assert_eq!(c.tracing.path, PathBuf::from("/t"));
    assert!(!c.tracing.enabled && !c.tracing.compress);
}

fn env(k: &str) -> Option<String> {
    match k {
        "A" | "B" => Some("x".to_owned()),
        "C" => Some("y".to_owned()),
        "HOST" => Some("node1".to_owned()),
        "EMPTY" => Some(String::new()),
        "Q" => Some("it's".to_owned()),
        _ => None,
    }
}

#[test]
fn env_expansion_of_names() {
    let x = |s: &str| expand_env_with(s, &env);
    assert_eq!(x("dir: /data/$HOST/db"), "dir: /data/node1/db");
    assert_eq!(x("dir: ${HOST}x"), "dir: node1x");
    assert_eq!(x("dir: ${ HOST }"), "dir: node1");
    assert_eq!(x("dir: $HOSTx"), "dir: ");
    assert_eq!(x("v: [$UNSET]"), "v: []");
    assert_eq!(x("v: ${UNSET}."), "v: .");
    assert_eq!(x("v: $EMPTY."), "v: .");
    assert_eq!(x("no dollars"), "no dollars");
    assert_eq!(x("ünïcode $HOST ✓"), "ünïcode node1 ✓");
}

#[test]
fn env_expansion_expressions() {
    let x = |s: &str| expand_env_with(s, &env);
    assert_eq!(x("v: ${ A == 'x' }"), "v: true");
    assert_eq!(x("v: ${A=='y'}"), "v: false");
    assert_eq!(x("v: ${ A != \"x\" }"), "v: false");
    assert_eq!(x("v: ${ C != \"x\" }"), "v: true");
    assert_eq!(x("v: ${ A == B }"), "v: true");
    assert_eq!(x("v: ${ A == C }"), "v: false");
    assert_eq!(x("v: ${ A != C }"), "v: true");
    assert_eq!(x("v: ${ UNSET == '' }"), "v: true");
    assert_eq!(x("v: ${ UNSET == EMPTY }"), "v: true");
    assert_eq!(x("v: ${ UNSET != A }"), "v: true");
    assert_eq!(x("v: ${ Q == 'it's' }"), "v: true");
    assert_eq!(x("v: ${ A == 'x\" }"), "v: ");
    assert_eq!(x("v: ${ A === 'x' }"), "v: ");
    assert_eq!(x("v: ${ A == x y }"), "v: ");
    // A primary chosen by hostname, as in LiteFS's docs.
    assert_eq!(
        x("lease:\n  candidate: ${ HOST == \"node1\" }\n"),
        "lease:\n  candidate: true\n"
    );
}

#[test]
fn env_expansion_edge_cases_follow_go() {
    let x = |s: &str| expand_env_with(s, &env);
    assert_eq!(x("price: 5$ and $"), "price: 5$ and $");
    assert_eq!(x("a $/b $.c $'d'"), "a $/b $.c $'d'");
    assert_eq!(x("pa$$word"), "paword");
    assert_eq!(x("$1abc ${1} ${10} $* $#"), "abc    ");
    assert_eq!(x("a${}b"), "ab");
    assert_eq!(x("a${HOST"), "aHOST");
    assert_eq!(x("$"), "$");
    assert_eq!(x("x: $\n"), "x: $\n");
}

#[test]
fn expansion_is_applied_before_parsing_unless_disabled() {
    // Cargo sets CARGO_PKG_NAME for the tests it runs (unset: empty).
    let want = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
    let text = "lease:\n  type: static\n  hostname: '${CARGO_PKG_NAME}'\n";
    let c = Config::parse(text, Path::new("x.yml"), true).unwrap();
    assert_eq!(c.lease.hostname, want);
    let c = Config::parse(text, Path::new("x.yml"), false).unwrap();
    assert_eq!(c.lease.hostname, "${CARGO_PKG_NAME}");
}

#[test]
fn mount_dir_must_differ_from_data_dir() {
    for (fuse, data) in [
        ("/x/y", "/x/y"),
        ("/x/y", "/x/y/"),
        ("/x/y", "/x/./y"),
        ("/x/y", "/x/z/../y"),
        ("/x//y", "/x/y"),
        ("y", "/cwd/y"),
        ("./y/", "y"),
    ] {
        let e = invalid_err(&format!(
            "{STATIC}fuse:\n  dir: {fuse}\ndata:\n  dir: {data}\n"
        ));
        assert!(
            e.starts_with("config: fuse.dir: ") && e.contains("data.dir") && e.contains("same"),
            "{fuse} {data}: {e}"
        );
    }
}

#[test]
fn mount_dir_and_data_dir_must_not_nest() {
    let e = invalid_err(&format!(
        "{STATIC}fuse:\n  dir: /x/y/mnt\ndata:\n  dir: /x/y\n"
    ));
    assert!(
        e.starts_with("config: fuse.dir: /x/y/mnt must not be inside data.dir /x/y"),
        "{e}"
    );
    let e = invalid_err(&format!(
        "{STATIC}fuse:\n  dir: /x\ndata:\n  dir: /x/../x/data\n"
    ));
    assert!(e.starts_with("config: data.dir: "), "{e}");
    // Siblings, and a name that merely starts with the other, are fine.
    valid(&format!(
        "{STATIC}fuse:\n  dir: /x/mnt\ndata:\n  dir: /x/data\n"
    ));
    valid(&format!(
        "{STATIC}fuse:\n  dir: /x/y\ndata:\n  dir: /x/yy\n"
    ));
}

#[test]
fn required_keys() {
    let e = invalid_err(&format!("{STATIC}fuse:\n  dir: \"\"\n"));
    assert_eq!(e, "config: fuse.dir: required");
    let e = invalid_err(&format!("{STATIC}data:\n  dir: ''\n"));
    assert_eq!(e, "config: data.dir: required");
    let e = invalid_err("data:\n  dir: /d\n");
    assert_eq!(e, "config: lease.type: required: static or consul");
}

#[test]
fn lease_rules() {
    let e = invalid_err("lease:\n  type: static\n  databases: [a.db]\n");
    assert!(e.starts_with("config: lease.databases: "), "{e}");
    valid("lease:\n  type: static\n  candidate: false\n  advertise-url: http://p:20202\n  databases: [a.db]\n");
    let e = invalid_err("lease:\n  type: static\n  candidate: false\n");
    assert!(
        e.starts_with("config: lease.advertise-url: required on a static replica"),
        "{e}"
    );
    let c = valid("http:\n  auth-token: s3cret\n  debug: true\nlease:\n  type: static\n");
    assert_eq!(c.http.auth_token, "s3cret");
    assert!(c.http.debug);
    let e = invalid_err("lease:\n  type: consul\n");
    assert_eq!(
        e,
        "config: lease.consul.url: required with lease.type consul"
    );
    let e = invalid_err("lease:\n  type: consul\n  consul:\n    url: http://c:8500\n");
    assert_eq!(
        e,
        "config: lease.consul.key: required with lease.type consul"
    );
    valid("lease:\n  type: consul\n  consul:\n    url: http://c:8500\n    key: k\n");
}

#[test]
fn proxy_and_backup_rules() {
    let e = invalid_err(&format!("{STATIC}proxy:\n  target: localhost:8081\n"));
    assert_eq!(e, "config: proxy.addr: required when proxy.target is set");
    let e = invalid_err(&format!(
        "{STATIC}proxy:\n  target: localhost:8081\n  addr: ':8080'\n"
    ));
    assert_eq!(e, "config: proxy.db: required when proxy.target is set");
    valid(&format!(
        "{STATIC}proxy:\n  target: localhost:8081\n  addr: ':8080'\n  db: app.db\n"
    ));
    valid(&format!("{STATIC}proxy:\n  addr: ':8080'\n"));
    let e = invalid_err(&format!("{STATIC}backup:\n  type: file\n"));
    assert_eq!(e, "config: backup.path: required with backup.type file");
    valid(&format!("{STATIC}backup:\n  type: file\n  path: /b\n"));
    let e = invalid_err(&format!("{STATIC}backup:\n  type: s3\n"));
    assert_eq!(e, "config: backup.bucket: required with backup.type s3");
    valid(&format!(
        "{STATIC}backup:\n  type: s3\n  bucket: b\n  endpoint: http://127.0.0.1:9000\n"
    ));
    valid(&format!("{STATIC}backup:\n  type: litefs-cloud\n"));
    valid(&format!("{STATIC}backup:\n  type: \"\"\n"));
    let c = valid(&format!(
        "{STATIC}backup:\n  levels:\n    - interval: 1s\n    - interval: 1m\n  snapshot:\n    interval: 1h\n    retention: 0s\n"
    ));
    let levels: Vec<u64> = c
        .backup
        .levels
        .iter()
        .map(|l| l.interval.as_secs())
        .collect();
    assert_eq!(levels, [1, 60]);
    assert_eq!(c.backup.snapshot.interval, Duration::from_secs(3600));
    assert!(c.backup.snapshot.retention.is_zero());
    assert!(valid(&format!("{STATIC}backup:\n  levels: []\n"))
        .backup
        .levels
        .is_empty());
    let e = invalid_err(&format!(
        "{STATIC}backup:\n  levels:\n    - interval: 1s\n    - {{}}\n"
    ));
    assert_eq!(
        e,
        "config: backup.levels: level 2 needs an interval above 0"
    );
    let nine = "    - interval: 1s\n".repeat(9);
    let e = invalid_err(&format!("{STATIC}backup:\n  levels:\n{nine}"));
    assert_eq!(e, "config: backup.levels: at most 8 levels (1 to 8), not 9");
    let e = parse_err(&format!("{STATIC}backup:\n  levels:\n    - every: 1s\n"));
    assert!(e.contains("every"), "{e}");
}

#[test]
fn check_dirs_needs_the_mount_parent() {
    let d = tempfile::tempdir().unwrap();
    let mut c = Config::embedded_default(d.path());
    c.check_dirs().unwrap(); // base exists, mnt does not yet: fine
    c.fuse.dir = d.path().join("missing").join("mnt");
    let e = c.check_dirs().unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "config: fuse.dir: parent directory does not exist: {}",
            d.path().join("missing").display()
        )
    );
    std::fs::write(d.path().join("file"), b"").unwrap();
    c.fuse.dir = d.path().join("file").join("mnt");
    let e = c.check_dirs().unwrap_err().to_string();
    assert!(e.contains("not a directory") && e.contains("file"), "{e}");
}

#[test]
fn embedded_default_is_a_valid_single_node() {
    let c = Config::embedded_default(Path::new("/tmp/demo"));
    c.validate().unwrap();
    assert_eq!(c.lease.kind, Some(LeaseType::Static));
    assert!(c.lease.candidate);
    assert_eq!(c.lease.hostname, "localhost");
    assert_eq!(c.lease.advertise_url, "http://localhost:20202");
    assert_eq!(c.data.dir, PathBuf::from("/tmp/demo/data"));
    assert_eq!(c.fuse.dir, PathBuf::from("/tmp/demo/mnt"));
    assert_eq!(c.http.addr, "127.0.0.1:20202");
    assert_eq!(c.data.retention, Config::default().data.retention);
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
    let find = |explicit: Option<&Path>| find_config_in(explicit, &cwd, Some(&home), &etc);

    let e = find(None).unwrap_err();
    assert!(matches!(&e, ConfigError::NotFound { searched } if searched.len() == 3));
    let msg = e.to_string();
    for p in [&cwd, &home, &etc] {
        assert!(
            msg.contains(&p.join("litefs.yml").display().to_string()),
            "{msg}"
        );
    }

    std::fs::write(etc.join("litefs.yml"), "").unwrap();
    assert_eq!(find(None).unwrap(), etc.join("litefs.yml"));
    std::fs::write(home.join("litefs.yml"), "").unwrap();
    assert_eq!(find(None).unwrap(), home.join("litefs.yml"));
    std::fs::write(cwd.join("litefs.yml"), "").unwrap();
    assert_eq!(find(None).unwrap(), cwd.join("litefs.yml"));

    // An explicit path wins, and must exist.
    let other = d.path().join("other.yml");
    std::fs::write(&other, "").unwrap();
    assert_eq!(find(Some(&other)).unwrap(), other);
    let missing = d.path().join("nope.yml");
    let e = find(Some(&missing)).unwrap_err().to_string();
    assert!(e.starts_with(&missing.display().to_string()), "{e}");

    // No home: two places.
    std::fs::remove_file(cwd.join("litefs.yml")).unwrap();
    std::fs::remove_file(etc.join("litefs.yml")).unwrap();
    let e = find_config_in(None, &cwd, None, &etc).unwrap_err();
    assert!(matches!(e, ConfigError::NotFound { searched } if searched.len() == 2));
    let e = find_config_in(None, &cwd, Some(Path::new("")), &etc).unwrap_err();
    assert!(matches!(e, ConfigError::NotFound { searched } if searched.len() == 2));
}

#[test]
fn load_names_an_unreadable_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("litefs.yml");
    let e = Config::load(&p, true).unwrap_err().to_string();
    assert!(e.starts_with(&p.display().to_string()), "{e}");
    std::fs::write(&p, "lease:\n  type: static\n  candiate: true\n").unwrap();
    let e = Config::load(&p, true).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: line 3: lease: unknown field \"candiate\" (did you mean \"candidate\"?)",
            p.display()
        )
    );
}

#[test]
fn other_yaml_problems_are_one_line() {
    let e = parse_err("data:\n  dir: /a\n  dir: /b\n");
    assert_eq!(
        e,
        "litefs.yml: data: duplicate field \"dir\" in the mapping starting at line 2"
    );
    let e = parse_err("just a string\n");
    assert_eq!(
        e,
        "litefs.yml: line 1: invalid type: string \"just a string\", expected a mapping"
    );
    let e = parse_err("proxy:\n  passthrough: '*.png'\n");
    assert!(
        e.contains("line 2: proxy.passthrough: ") && e.contains("list"),
        "{e}"
    );
    let e = parse_err("\tdata: 1\n");
    assert!(e.starts_with("litefs.yml: line 1: "), "{e}");
}

#[test]
fn fuse_io_keys() {
    let c = valid(&format!("{STATIC}fuse:\n  dir: /f\n"));
    assert!(c.fuse.passthrough);
    assert_eq!(c.fuse.capture_interval, Duration::from_millis(1));
    let c = valid(&format!(
        "{STATIC}fuse:\n  dir: /f\n  passthrough: false\n  capture-interval: 250us\n"
    ));
    assert!(!c.fuse.passthrough);
    assert_eq!(c.fuse.capture_interval, Duration::from_micros(250));
    let e = invalid_err(&format!(
        "{STATIC}fuse:\n  dir: /f\n  capture-interval: 0s\n"
    ));
    assert!(e.contains("fuse.capture-interval"), "{e}");
    let e = parse_err("fuse:\n  passthrough: sometimes\n");
    assert!(e.contains("fuse.passthrough"), "{e}");
}
