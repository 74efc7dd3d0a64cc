//! The live progress on standard error: a line rewritten in place every second on a terminal;
//! a plain line every ten seconds otherwise (CI logs stay short).

use std::{
    io::{IsTerminal as _, Write as _},
    sync::Arc,
    time::Duration,
};

use tokio::{task::JoinHandle, time::Instant};

use crate::stats::{Recorder, per_second};

/// The progress reporter of one load phase; it stops when dropped.
#[derive(Debug)]
pub struct Progress {
    task: JoinHandle<()>,
    terminal: bool,
}

impl Progress {
    /// Reports `recorder`'s totals under `label` until dropped.
    pub fn start(label: &str, recorder: Arc<Recorder>) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let every = if terminal {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        let label = label.to_owned();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut last = (0, start);
            let mut ticks = tokio::time::interval_at(start + every, every);
            loop {
                let now = ticks.tick().await;
                let (requests, failures) = recorder.totals();
                let rate = per_second(requests - last.0, now - last.1);
                last = (requests, now);
                let line = progress_line(&label, now - start, requests, failures, rate);
                let mut stderr = std::io::stderr().lock();
                let _ = if terminal {
                    write!(stderr, "\r\x1b[2K{line}")
                } else {
                    writeln!(stderr, "{line}")
                };
                let _ = stderr.flush();
            }
        });
        Self { task, terminal }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
        if self.terminal {
            // The in-place line is cleared so the summary starts on a clean line.
            eprint!("\r\x1b[2K");
        }
    }
}

/// `label  12s  34567 requests  2880/s  3 not 2xx`.
fn progress_line(label: &str, elapsed: Duration, requests: u64, failures: u64, rate: f64) -> String {
    format!(
        "{label}  {:>4}s  {requests:>8} requests  {rate:>7.0}/s  {failures} not 2xx",
        elapsed.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_time_requests_rate_and_failures() {
        assert_eq!(
            progress_line("read", Duration::from_millis(12_400), 34_567, 3, 2_880.4),
            "read    12s     34567 requests     2880/s  3 not 2xx"
        );
    }
}
