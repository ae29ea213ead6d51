//! Bad input on the command line and in `litefs.yml`: each fails at once
//! with one line naming what is wrong, and nothing is mounted.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

fn mount_with(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("litefs.yml");
    std::fs::write(
        &path,
        config.replace("$TMP", &dir.path().display().to_string()),
    )
    .unwrap();
    run(&["mount", "-config", path.to_str().unwrap()])
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_litefs"))
        .args(args)
        .output()
        .expect("run litefs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line_error(ok: bool, stderr: &str, needles: &[&str]) {
    assert!(!ok, "expected failure, stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in {:?}", lines[0]);
    }
}

const GOOD: &str = "fuse:\n  dir: $TMP/mnt\ndata:\n  dir: $TMP/data\nlease:\n  type: static\n";

#[test]
fn unknown_key_is_named_with_its_line() {
    let (ok, err) = mount_with(&format!("{GOOD}  candidat: true\n"));
    assert_one_line_error(ok, &err, &["candidat", "line 7"]);
}

#[test]
fn bad_duration_is_named() {
    let (ok, err) = mount_with(&format!("{GOOD}  reconnect-delay: soon\n"));
    assert_one_line_error(ok, &err, &["lease.reconnect-delay", "soon"]);
}

#[test]
fn missing_config_file_is_named() {
    let (ok, err) = run(&["mount", "-config", "/nonexistent/litefs.yml"]);
    assert_one_line_error(ok, &err, &["/nonexistent/litefs.yml"]);
}

#[test]
fn mount_dir_equal_to_data_dir_is_refused() {
    let (ok, err) =
        mount_with("fuse:\n  dir: $TMP/x\ndata:\n  dir: $TMP/x/\nlease:\n  type: static\n");
    assert_one_line_error(ok, &err, &["fuse.dir", "data.dir"]);
}

#[test]
fn missing_lease_type_is_named() {
    let (ok, err) = mount_with("fuse:\n  dir: $TMP/mnt\ndata:\n  dir: $TMP/data\n");
    assert_one_line_error(ok, &err, &["lease.type"]);
}

#[test]
fn uncreatable_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let cfg = format!(
        "fuse:\n  dir: {}/mnt\ndata:\n  dir: {}/data\nlease:\n  type: static\n",
        dir.path().display(),
        file.display()
    );
    let path = dir.path().join("litefs.yml");
    std::fs::write(&path, cfg).unwrap();
    let (ok, err) = run(&["mount", "-config", path.to_str().unwrap()]);
    assert_one_line_error(ok, &err, &["data.dir", "plain-file"]);
    assert!(!Path::new(&dir.path().join("mnt")).join("x").exists());
}

#[test]
fn version_and_help() {
    let (ok, _) = run(&["version"]);
    assert!(ok);
    let out = Command::new(env!("CARGO_BIN_EXE_litefs"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("mount"));
}
