//! The batched standard output (`telemetry::log_writer`) as a process sees it, run in a child
//! process of this test binary: what a panic or an abrupt exit leaves on standard output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{io::Write as _, process::Command};

use shop_platform::telemetry::log_writer::{BatchedStdout, FLUSH_AFTER};
use tracing_subscriber::fmt::MakeWriter as _;

/// Set in the child: which case it plays.
const CHILD: &str = "SHOP_LOG_WRITER_CHILD";

/// Plays `play` in a child process (this test binary running only the test `name`, with `CHILD`
/// set), which must end the process itself; returns the child's standard output. In the
/// child, never returns.
fn in_child(name: &str, play: impl FnOnce()) -> String {
    if std::env::var(CHILD).is_ok_and(|case| case == name) {
        play();
        unreachable!("the child ends its process itself");
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A line logged just before a panic is written by the panic hook, even when the process
/// exits at once after it (here well inside the flusher's 25 ms).
#[test]
fn a_line_logged_just_before_a_panic_is_written() {
    let out = in_child("a_line_logged_just_before_a_panic_is_written", || {
        let stdout = BatchedStdout::install();
        writeln!(stdout.make_writer(), "the last line before the panic").unwrap();
        let _ = std::panic::catch_unwind(|| panic!("on purpose"));
        std::process::exit(3);
    });
    assert!(out.contains("the last line before the panic"), "{out}");
}

/// An exit without the guard's flush (as after SIGKILL) loses at most the lines of the last
/// [`FLUSH_AFTER`]: a line older than that was written by the flusher.
#[test]
fn an_abrupt_exit_loses_only_the_last_lines() {
    let out = in_child("an_abrupt_exit_loses_only_the_last_lines", || {
        let stdout = BatchedStdout::install();
        writeln!(stdout.make_writer(), "a line from well before the exit").unwrap();
        std::thread::sleep(FLUSH_AFTER * 8);
        writeln!(stdout.make_writer(), "a line just before the exit").unwrap();
        std::process::exit(3);
    });
    assert!(out.contains("a line from well before the exit"), "{out}");
}
