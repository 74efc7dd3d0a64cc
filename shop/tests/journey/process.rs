//! The real binaries as child processes: located next to this test executable, started with
//! an environment of our choosing (nothing inherited), their output kept line by line and
//! printed when the test fails. Every child dies with the test (`kill_on_drop`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, BufReader},
    process::{Child, Command},
};

/// Lines of each process printed when a test fails.
const PRINTED_LINES: usize = 200;

/// The path of the workspace binary `name`, built by cargo next to this test's executable:
/// `target/<profile>/deps/<test>` → `target/<profile>/<name>`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{name} is not built (looked for {}): run `cargo build --bins` first, or run the whole \
         workspace's tests (`cargo nextest run --workspace`), which builds every binary",
        path.display()
    );
    path
}

/// Everything a process wrote, one entry per line (stderr lines marked).
#[derive(Debug, Default)]
pub struct Output {
    lines: Mutex<Vec<String>>,
}

impl Output {
    /// The lines from `from` on.
    pub fn lines_from(&self, from: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines.get(from..).map(<[String]>::to_vec).unwrap_or_default()
    }

    /// The last `count` lines, joined.
    fn tail(&self, count: usize) -> String {
        let lines = self.lines.lock().unwrap();
        let start = lines.len().saturating_sub(count);
        lines[start..].join("\n")
    }

    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
    }
}

async fn collect(stream: impl AsyncRead + Unpin, output: Arc<Output>, mark: &'static str) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        output.push(format!("{mark}{line}"));
    }
}

/// A running child process.
pub struct Process {
    name: String,
    child: Child,
    output: Arc<Output>,
}

impl Process {
    /// Starts `command` as `name`; its standard output and error are collected.
    pub fn start(name: &str, mut command: Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("starting {name}: {error}"));
        let output = Arc::new(Output::default());
        tokio::spawn(collect(child.stdout.take().unwrap(), Arc::clone(&output), ""));
        tokio::spawn(collect(child.stderr.take().unwrap(), Arc::clone(&output), "[stderr] "));
        Self {
            name: name.to_owned(),
            child,
            output,
        }
    }

    /// The name it was started as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its output, shared.
    pub fn output(&self) -> Arc<Output> {
        Arc::clone(&self.output)
    }

    /// Its process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills it (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
    }

    /// Asks it to stop (SIGTERM) and waits up to `grace` for it to exit, without an async
    /// runtime (for a `Drop`); it is killed on drop if it is still running then. A master
    /// process that SIGKILL would orphan its workers (nginx) stops them on SIGTERM.
    pub fn terminate(&mut self, grace: Duration) {
        let Some(pid) = self.child.id() else { return };
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for it to exit; fails if it does not.
    pub async fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} still runs after {timeout:?}", self.name))
            .unwrap();
        // Let the readers drain what it wrote last.
        tokio::time::sleep(Duration::from_millis(100)).await;
        status
    }

    /// Forgets what it wrote, so a later failure does not print it.
    pub fn forget_output(&mut self) {
        self.output.lines.lock().unwrap().clear();
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Fails the test if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early ({status}); its output follows", self.name);
        }
    }

    /// Waits up to `timeout` for a line that `find` accepts, and returns what it found; fails
    /// if the process exits first.
    pub async fn wait_for_line<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut find: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            let lines = self.output.lines_from(seen);
            seen += lines.len();
            if let Some(found) = lines.iter().find_map(|line| find(line)) {
                return found;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the readers drain what it wrote last before the output is printed.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!("{} exited ({status}) before {what}; its output follows", self.name);
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {timeout:?}; its output follows",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n----- {} (last {PRINTED_LINES} lines) -----\n{}\n----- end of {} -----",
                self.name,
                self.output.tail(PRINTED_LINES),
                self.name
            );
        }
    }
}

/// The `fields` of a JSON log line (`SHOP_LOG_FORMAT=json`) whose message is `message`.
pub fn log_fields(line: &str, message: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let record: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let fields = record.get("fields")?.as_object()?;
    (fields.get("message")?.as_str()? == message).then(|| fields.clone())
}
