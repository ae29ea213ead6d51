//! SQLite's own TCL test suite on the mount. Each test file runs with
//! `--testdir` in a plain directory and in a directory of the mount; the
//! mount must not produce more errors than the plain directory. (LiteFS
//! v0.5.14 crashes on wal.test and trans.test.)
//!
//! The files come from `fuse-tests/tcl-files.txt` (how they were chosen is
//! written there). `LITEFS_TCL` picks which: `ci` (the default: the files
//! marked `ci`), `all`, or a comma-separated list of names.
//! `LITEFS_TCL_OUT=<file>` also writes the table there.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::{fuse_available, tool, Node};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One test file's outcome: errors, tests, seconds.
type Outcome = Result<(u32, u32, f64), String>;

/// The test files to run, from the list and `LITEFS_TCL`.
fn chosen_files() -> Vec<String> {
    let choice = std::env::var("LITEFS_TCL").unwrap_or_else(|_| "ci".to_string());
    if choice != "ci" && choice != "all" {
        return choice
            .split(',')
            .map(|n| n.trim().trim_end_matches(".test").to_string())
            .filter(|n| !n.is_empty())
            .collect();
    }
    let list_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tcl-files.txt");
    let text = std::fs::read_to_string(&list_path).expect("read tcl-files.txt");
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.to_string();
            (choice == "all" || w.any(|t| t == "ci")).then_some(name)
        })
        .collect()
}

/// Runs one test file with `--testdir=dir`; returns (errors, tests, seconds)
/// or the tail of its output when it did not finish.
fn run(testfixture: &Path, src: &Path, file: &str, dir: &Path) -> Outcome {
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
    let mut timed_out = false;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            timed_out = true;
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
    let mut msg = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    if timed_out {
        msg.push_str("\n(killed after 900 s)");
    }
    Err(msg)
}

/// A table cell: errors/tests, or that the file never printed its summary.
fn cell(o: &Outcome) -> String {
    match o {
        Ok((e, t, _)) => format!("{e}/{t}"),
        Err(_) => "no end".to_string(),
    }
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
    let files = chosen_files();
    assert!(!files.is_empty(), "LITEFS_TCL chose no test file");
    for f in &files {
        assert!(
            src.join(format!("test/{f}.test")).is_file(),
            "no test/{f}.test in {}",
            src.display()
        );
    }
    let plain = tempfile::tempdir().expect("tempdir");
    let node = Node::start("");
    let mut failures = Vec::new();
    let mut table = vec![format!(
        "{:<20} {:>14} {:>14} {:>9} {:>9}",
        "file", "plain errors", "mount errors", "plain s", "mount s"
    )];
    eprintln!("{}", table[0]);
    let (mut plain_secs, mut mount_secs) = (0.0, 0.0);
    for file in &files {
        let p = run(&tf, &src, file, &plain.path().join(file));
        let m = run(&tf, &src, file, &node.path(&format!("tcl_{file}")));
        let secs = |o: &Outcome| o.as_ref().map_or(0.0, |r| r.2);
        plain_secs += secs(&p);
        mount_secs += secs(&m);
        let row = format!(
            "{file:<20} {:>14} {:>14} {:>9.1} {:>9.1}",
            cell(&p),
            cell(&m),
            secs(&p),
            secs(&m)
        );
        eprintln!("{row}");
        table.push(row);
        match (&p, &m) {
            (Ok((pe, ..)), Ok((me, ..))) => {
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
        // Each file's databases go: a long list must not fill the disk.
        let _ = std::fs::remove_dir_all(plain.path().join(file));
        let _ = std::fs::remove_dir_all(node.path(&format!("tcl_{file}")));
    }
    let total = format!(
        "{} files, {} with more errors on the mount; {plain_secs:.0} s plain, {mount_secs:.0} s on the mount",
        files.len(),
        failures.len()
    );
    eprintln!("{total}");
    table.push(total);
    if let Ok(out) = std::env::var("LITEFS_TCL_OUT") {
        std::fs::write(&out, table.join("\n") + "\n").expect("write LITEFS_TCL_OUT");
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
