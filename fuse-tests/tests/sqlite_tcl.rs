//! SQLite's own TCL test suite on the mount. Each test file runs with
//! `--testdir` in a plain directory and in a directory of the mount; the
//! mount must not produce more errors than the plain directory. (LiteFS
//! v0.5.14 crashes on wal.test and trans.test.)
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::{fuse_available, tool, Node};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FILES: [&str; 19] = [
    "select1",
    "insert",
    "delete",
    "update",
    "trans",
    "journal1",
    "jrnlmode",
    "wal",
    "wal3",
    "wal5",
    "walmode",
    "walcrash",
    "pager2",
    "vacuum",
    "incrvacuum",
    "autovacuum",
    "lock",
    "savepoint",
    "backup",
];

/// Runs one test file with `--testdir=dir`; returns (errors, tests, seconds)
/// or the tail of its output when it did not finish.
fn run(testfixture: &Path, src: &Path, file: &str, dir: &Path) -> Result<(u32, u32, f64), String> {
    let start = Instant::now();
    // Output goes to a file: a pipe nobody reads would fill up and stall the
    // (very talkative) test scripts.
    let out_path =
        std::env::temp_dir().join(format!("litefs-tcl-{}-{file}.out", std::process::id()));
    let out = std::fs::File::create(&out_path).expect("create output file");
    let mut child = Command::new(testfixture)
        .arg(format!("test/{file}.test"))
        .arg(format!("--testdir={}", dir.display()))
        .current_dir(src)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("spawn testfixture");
    let deadline = start + Duration::from_secs(900);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let secs = start.elapsed().as_secs_f64();
    for line in text.lines() {
        // "N errors out of M tests on ..."
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 6 && w[1] == "errors" && w[2] == "out" && w[3] == "of" {
            if let (Ok(e), Ok(t)) = (w[0].parse(), w[4].parse()) {
                return Ok((e, t, secs));
            }
        }
    }
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
}

#[test]
fn sqlite_tcl_suite_on_the_mount() {
    if !fuse_available() {
        return;
    }
    let Some(tf) = tool("TESTFIXTURE_BIN", "testfixture") else {
        return;
    };
    let src = tf.parent().expect("testfixture dir").join("src");
    assert!(
        src.join("test/tester.tcl").exists(),
        "no SQLite test/ directory next to {}",
        tf.display()
    );
    let plain = tempfile::tempdir().expect("tempdir");
    let node = Node::start("");
    let mut failures = Vec::new();
    eprintln!(
        "{:<12} {:>14} {:>14} {:>9} {:>9}",
        "file", "plain errors", "mount errors", "plain s", "mount s"
    );
    for file in FILES {
        let p = run(&tf, &src, file, &plain.path().join(file));
        let m = run(&tf, &src, file, &node.path(&format!("tcl_{file}")));
        match (&p, &m) {
            (Ok((pe, pt, ps)), Ok((me, mt, ms))) => {
                eprintln!(
                    "{file:<12} {:>14} {:>14} {ps:>9.1} {ms:>9.1}",
                    format!("{pe}/{pt}"),
                    format!("{me}/{mt}")
                );
                if me > pe {
                    failures.push(format!(
                        "{file}: {me} errors on the mount, {pe} in a plain directory"
                    ));
                }
            }
            (_, Err(tail)) => {
                failures.push(format!("{file}: did not finish on the mount:\n{tail}"))
            }
            (Err(tail), _) => failures.push(format!(
                "{file}: did not finish in a plain directory:\n{tail}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n--- daemon log tail ---\n{}",
        failures.join("\n"),
        {
            let log = node.log_text();
            let lines: Vec<&str> = log.lines().rev().take(30).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        }
    );
}
