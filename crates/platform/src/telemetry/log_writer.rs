//! Log lines to standard output in batches: each line is appended to a buffer in memory, and a
//! flusher thread writes what has gathered at most [`FLUSH_AFTER`] after the first line of a
//! batch arrived (at once when [`FLUSH_BYTES`] have gathered).
//!
//! Why: standard output flushes at every newline, so each log line was a `write(2)` of its own
//! on the thread that logged it: under a flash sale that was half of what a log line cost the
//! order service (two lines an order). Batched, a busy service writes a few dozen times a
//! second whatever it logs, and an idle one never wakes the flusher.
//!
//! The price: a process killed without warning (SIGKILL, OOM) loses the lines of its last
//! [`FLUSH_AFTER`]. A normal exit (the telemetry guard dropped) and a panic (the hook installed
//! by [`BatchedStdout::install`]) write everything first. The process's diagnostics on standard
//! error are not batched.

use std::{
    io::{self, Write},
    mem,
    sync::{Arc, Condvar, Mutex, OnceLock, PoisonError},
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

/// The longest a line waits in memory.
pub const FLUSH_AFTER: Duration = Duration::from_millis(25);
/// A batch this large is written at once, by the thread that filled it.
pub const FLUSH_BYTES: usize = 64 * 1024;

/// Where the batches go, written in order.
type Sink = Box<dyn Write + Send>;

/// The buffer and its sink, shared by the writers and the flusher.
struct Shared {
    /// Lines not yet written.
    pending: Mutex<Vec<u8>>,
    /// Signalled when `pending` stops being empty.
    arrived: Condvar,
    /// The output. Taken before `pending` by whoever writes a batch, so batches go out in the
    /// order they were taken.
    sink: Mutex<Sink>,
}

impl Shared {
    /// Writes what is pending.
    fn flush(&self) -> io::Result<()> {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let batch = mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if !batch.is_empty() {
            sink.write_all(&batch)?;
        }
        sink.flush()
    }

    /// The flusher: waits for a first line, lets the batch gather, writes it.
    fn run_flusher(&self) {
        loop {
            {
                let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                let _pending = self
                    .arrived
                    .wait_while(pending, |pending| pending.is_empty())
                    .unwrap_or_else(PoisonError::into_inner);
            }
            std::thread::sleep(FLUSH_AFTER);
            // Nowhere to report a failed write of the log itself.
            let _ = self.flush();
        }
    }
}

/// The `MakeWriter` of batched log lines (cheap to clone; all clones share one buffer).
#[derive(Clone)]
pub struct BatchedStdout {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BatchedStdout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedStdout").finish_non_exhaustive()
    }
}

impl BatchedStdout {
    /// The process's batched standard output, its flusher thread started and a panic hook
    /// installed that writes the pending lines before the panic is reported. Made once; later
    /// calls return the same one.
    pub fn install() -> Self {
        static STDOUT: OnceLock<BatchedStdout> = OnceLock::new();
        STDOUT
            .get_or_init(|| {
                let stdout = Self::to(Box::new(io::stdout()));
                let flushing = stdout.clone();
                let previous = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    let _ = flushing.flush();
                    previous(info);
                }));
                stdout
            })
            .clone()
    }

    /// Batched lines into `sink`, with a flusher thread of their own.
    fn to(sink: Sink) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(FLUSH_BYTES)),
            arrived: Condvar::new(),
            sink: Mutex::new(sink),
        });
        let flusher = Arc::clone(&shared);
        // Detached: it sleeps while nothing is logged, and ends with the process.
        let spawned = std::thread::Builder::new()
            .name("log-flusher".to_owned())
            .spawn(move || flusher.run_flusher());
        if let Err(error) = spawned {
            eprintln!("cannot start the log flusher ({error}): log lines are written when 64 KiB have gathered");
        }
        Self { shared }
    }

    /// Writes every pending line now.
    pub fn flush(&self) -> io::Result<()> {
        self.shared.flush()
    }

    /// Adds `line` to the batch; writes the batch if it is full.
    fn append(&self, line: &[u8]) -> io::Result<()> {
        let full = {
            let mut pending = self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.is_empty() {
                self.shared.arrived.notify_one();
            }
            pending.extend_from_slice(line);
            pending.len() >= FLUSH_BYTES
        };
        if full { self.flush() } else { Ok(()) }
    }
}

/// One line's writer (the formatter writes each line whole, then drops it).
#[derive(Debug)]
pub struct LineWriter<'a> {
    stdout: &'a BatchedStdout,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.stdout.append(data)?;
        Ok(data.len())
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.stdout.append(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        // The batch is written by the flusher; a line need not be written on its own.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStdout {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { stdout: self }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A sink that remembers what it was given and in how many writes.
    #[derive(Clone, Default)]
    struct Recording {
        written: Arc<Mutex<(Vec<u8>, usize)>>,
    }

    impl Write for Recording {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let mut written = self.written.lock().unwrap();
            written.0.extend_from_slice(data);
            written.1 += 1;
            Ok(data.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Recording {
        fn text(&self) -> (String, usize) {
            let written = self.written.lock().unwrap();
            (String::from_utf8(written.0.clone()).unwrap(), written.1)
        }
    }

    fn log(stdout: &BatchedStdout, line: &str) {
        stdout.make_writer().write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn many_lines_go_out_in_a_few_writes_in_their_order() {
        let sink = Recording::default();
        let stdout = BatchedStdout::to(Box::new(sink.clone()));
        let lines: Vec<String> = (0..1_000).map(|n| format!("{{\"line\":{n}}}\n")).collect();
        for line in &lines {
            log(&stdout, line);
        }
        stdout.flush().unwrap();
        let (text, writes) = sink.text();
        assert_eq!(text, lines.concat());
        // One write per line before; now one per batch.
        assert!(writes < 10, "{writes} writes for 1,000 lines");
    }

    #[test]
    fn a_line_is_written_without_a_flush_soon_after_it_was_logged() {
        let sink = Recording::default();
        let stdout = BatchedStdout::to(Box::new(sink.clone()));
        log(&stdout, "started\n");
        let logged = Instant::now();
        while sink.text().0.is_empty() {
            assert!(logged.elapsed() < Duration::from_secs(5), "the line never went out");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.text().0, "started\n");
        // And the next batch too, after the flusher went back to waiting.
        log(&stdout, "again\n");
        while !sink.text().0.ends_with("again\n") {
            assert!(
                logged.elapsed() < Duration::from_secs(5),
                "the second line never went out"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_full_batch_is_written_by_the_thread_that_filled_it() {
        let sink = Recording::default();
        let stdout = BatchedStdout::to(Box::new(sink.clone()));
        let line = format!("{}\n", "x".repeat(FLUSH_BYTES - 1));
        log(&stdout, &line);
        // Written now, not FLUSH_AFTER later.
        assert_eq!(sink.text().0, line);
    }
}
