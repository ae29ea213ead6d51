//! `litefs.yml` end to end through the binary: where it is looked for, and
//! environment expansion on and off. Every case here fails before mounting.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

/// Runs `litefs ARGS` in `cwd` with `HOME=home` and extra variables; returns
/// success and stderr.
fn litefs(cwd: &Path, home: &Path, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_litefs"))
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .envs(env.iter().copied())
        .output()
        .expect("run litefs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    lines[0]
}

#[test]
fn config_is_searched_in_cwd_then_home() {
    let d = tempfile::tempdir().unwrap();
    let (cwd, home) = (d.path().join("cwd"), d.path().join("home"));
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(&home).unwrap();

    // A bad key in each file tells which one was read.
    std::fs::write(
        home.join("litefs.yml"),
        "lease:\n  type: static\nfrom-home: 1\n",
    )
    .unwrap();
    let (ok, err) = litefs(&cwd, &home, &[], &["mount"]);
    assert!(!ok);
    let line = one_line(&err);
    assert!(
        line.contains(&home.join("litefs.yml").display().to_string())
            && line.contains("line 3")
            && line.contains("\"from-home\""),
        "{line}"
    );

    std::fs::write(cwd.join("litefs.yml"), "from-cwd: 1\n").unwrap();
    let (ok, err) = litefs(&cwd, &home, &[], &["mount"]);
    assert!(!ok);
    let line = one_line(&err);
    assert!(
        line.contains(&cwd.join("litefs.yml").display().to_string()) && line.contains("from-cwd"),
        "{line}"
    );
}

#[test]
fn no_config_anywhere_lists_the_places_searched() {
    if Path::new("/etc/litefs.yml").exists() {
        return; // this machine has a system-wide config
    }
    let d = tempfile::tempdir().unwrap();
    let (ok, err) = litefs(d.path(), &d.path().join("home"), &[], &["mount"]);
    assert!(!ok);
    let line = one_line(&err);
    assert!(
        line.contains("not found")
            && line.contains(&d.path().join("litefs.yml").display().to_string())
            && line.contains("/etc/litefs.yml"),
        "{line}"
    );
}

#[test]
fn environment_is_expanded_unless_disabled() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("litefs.yml");
    std::fs::write(&path, "lease:\n  type: ${ LFS_TEST_LEASE }\n").unwrap();
    let cfg = path.to_str().unwrap();
    let env = [("LFS_TEST_LEASE", "etcd")];

    let (ok, err) = litefs(d.path(), d.path(), &env, &["mount", "-config", cfg]);
    assert!(!ok);
    let line = one_line(&err);
    assert!(
        line.contains("lease.type") && line.contains("\"etcd\""),
        "{line}"
    );

    let (ok, err) = litefs(
        d.path(),
        d.path(),
        &env,
        &["mount", "-no-expand-env", "-config", cfg],
    );
    assert!(!ok);
    let line = one_line(&err);
    assert!(
        line.contains("lease.type") && line.contains("${ LFS_TEST_LEASE }"),
        "{line}"
    );
}
