//! SQLite's own TCL test suite on the mount. Each test file runs with
//! `--testdir` in a plain directory and in a directory of the mount; every
//! test case that fails on the mount must fail in the plain directory too
//! (or be one the list allows, for an operation the mount does not
//! support). (LiteFS v0.5.14 crashes on wal.test and trans.test.)
//!
//! The files come from `fuse-tests/tcl-files.txt` (how they were chosen is
//! written there). `LITEFS_TCL` picks which: `ci` (the default: the files
//! marked `ci`), `all`, or a comma-separated list of names.
//! `LITEFS_TCL_OUT=<file>` also writes the table there.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::{fuse_available, tool, Node};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One test file as listed: its name and the test cases allowed to fail
/// on the mount only.
struct File {
    name: String,
    allowed: BTreeSet<String>,
}

/// How a run of one test file ended.
struct Done {
    errors: u32,
    tests: u32,
    /// The failed test cases (`!Failures on these tests:`).
    failed: BTreeSet<String>,
    secs: f64,
}

/// A finished run, or the tail of the output of one that did not finish.
type Outcome = Result<Done, String>;

/// The test files to run, from the list and `LITEFS_TCL`.
fn chosen_files() -> Vec<File> {
    let list_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tcl-files.txt");
    let text = std::fs::read_to_string(&list_path).expect("read tcl-files.txt");
    let listed: Vec<(File, bool)> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next().unwrap_or_default().to_string();
            let (mut ci, mut allowed) = (false, BTreeSet::new());
            for tag in w {
                if tag == "ci" {
                    ci = true;
                } else if let Some(list) = tag.strip_prefix("allow=") {
                    allowed.extend(list.split(',').map(str::to_string));
                } else {
                    panic!("tcl-files.txt: {name}: unknown tag {tag}");
                }
            }
            (File { name, allowed }, ci)
        })
        .collect();
    let choice = std::env::var("LITEFS_TCL").unwrap_or_else(|_| "ci".to_string());
    match choice.as_str() {
        "all" => listed.into_iter().map(|(f, _)| f).collect(),
        "ci" => listed
            .into_iter()
            .filter(|(_, ci)| *ci)
            .map(|(f, _)| f)
            .collect(),
        names => {
            let mut by_name: std::collections::HashMap<String, File> = listed
                .into_iter()
                .map(|(f, _)| (f.name.clone(), f))
                .collect();
            names
                .split(',')
                .map(|n| n.trim().trim_end_matches(".test"))
                .filter(|n| !n.is_empty())
                .map(|n| {
                    by_name.remove(n).unwrap_or(File {
                        name: n.to_string(),
                        allowed: BTreeSet::new(),
                    })
                })
                .collect()
        }
    }
}

/// Runs one test file with `--testdir=dir`.
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
    let failed: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("!Failures on these tests:"))
        .flat_map(|l| l.split_whitespace().map(str::to_string))
        .collect();
    for line in text.lines() {
        // "N errors out of M tests on ..."
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 6 && w[1] == "errors" && w[2] == "out" && w[3] == "of" {
            if let (Ok(errors), Ok(tests)) = (w[0].parse(), w[4].parse()) {
                return Ok(Done {
                    errors,
                    tests,
                    failed,
                    secs,
                });
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
        Ok(d) => format!("{}/{}", d.errors, d.tests),
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
            src.join(format!("test/{}.test", f.name)).is_file(),
            "no test/{}.test in {}",
            f.name,
            src.display()
        );
    }
    let plain = tempfile::tempdir().expect("tempdir");
    let node = Node::start("");
    let mut failures = Vec::new();
    let mut table = vec![format!(
        "{:<20} {:>14} {:>14} {:>9} {:>9}  {}",
        "file", "plain errors", "mount errors", "plain s", "mount s", "mount only"
    )];
    eprintln!("{}", table[0]);
    let (mut plain_secs, mut mount_secs) = (0.0, 0.0);
    for File { name, allowed } in &files {
        let mount_dir = node.path(&format!("tcl_{name}"));
        let p = run(&tf, &src, name, &plain.path().join(name));
        let m = run(&tf, &src, name, &mount_dir);
        let secs = |o: &Outcome| o.as_ref().map_or(0.0, |d| d.secs);
        plain_secs += secs(&p);
        mount_secs += secs(&m);
        // Test cases that failed on the mount only, and of those the ones
        // the list does not allow.
        let (mount_only, unexpected): (Vec<String>, Vec<String>) = match (&p, &m) {
            (Ok(pd), Ok(md)) => {
                let only: Vec<String> = md.failed.difference(&pd.failed).cloned().collect();
                let bad = only
                    .iter()
                    .filter(|t| !allowed.contains(*t))
                    .cloned()
                    .collect();
                (only, bad)
            }
            _ => (Vec::new(), Vec::new()),
        };
        let row = format!(
            "{name:<20} {:>14} {:>14} {:>9.1} {:>9.1}  {}",
            cell(&p),
            cell(&m),
            secs(&p),
            secs(&m),
            mount_only
                .iter()
                .map(|t| if allowed.contains(t) {
                    format!("{t} (allowed)")
                } else {
                    t.clone()
                })
                .collect::<Vec<_>>()
                .join(" ")
        );
        eprintln!("{row}");
        table.push(row);
        match (&p, &m) {
            (Ok(pd), Ok(md)) => {
                if !unexpected.is_empty() {
                    failures.push(format!(
                        "{name}: failed on the mount only: {}",
                        unexpected.join(" ")
                    ));
                } else if md.errors > pd.errors + mount_only.len() as u32 {
                    // Errors the failure list does not name (it names each
                    // case once; a count beyond that is a difference too).
                    failures.push(format!(
                        "{name}: {} errors on the mount, {} in a plain directory",
                        md.errors, pd.errors
                    ));
                }
            }
            (_, Err(tail)) => {
                failures.push(format!("{name}: did not finish on the mount:\n{tail}"))
            }
            (Err(tail), _) => failures.push(format!(
                "{name}: did not finish in a plain directory:\n{tail}"
            )),
        }
        // Each file's databases go: a long list must not fill the disk.
        let _ = std::fs::remove_dir_all(plain.path().join(name));
        let _ = std::fs::remove_dir_all(&mount_dir);
    }
    let total = format!(
        "{} files, {} with test cases failing on the mount only; {plain_secs:.0} s plain, {mount_secs:.0} s on the mount",
        files.len(),
        failures.len()
    );
    eprintln!("{total}");
    table.push(total);
    if let Ok(out) = std::env::var("LITEFS_TCL_OUT") {
        if let Err(e) = std::fs::write(&out, table.join("\n") + "\n") {
            failures.push(format!("LITEFS_TCL_OUT={out}: {e}"));
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
