//! A service binary as a supervised child process, as Kubernetes would run it: started with an
//! environment of our choosing (nothing inherited), started again when it exits on its own
//! (with a growing pause, like a pod's restart back-off), SIGKILLed and started again on
//! request. Its output is kept (for the mail codes and the start-up line) and written to a log
//! file. The child is killed when the supervisor stops or is dropped, panics included.

use std::{
    io::Write as _,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use shop_platform::backoff::Backoff;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, BufReader},
    process::{Child, Command},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

/// A process that ran this long had started fine: its restart pause starts over.
const STARTED_FINE_AFTER: Duration = Duration::from_secs(10);

/// Everything a process wrote, and how many times it said it was listening.
#[derive(Debug)]
pub struct Output {
    lines: Mutex<Vec<String>>,
    log: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    listening: AtomicUsize,
    unplanned_exits: AtomicUsize,
}

impl Output {
    fn new(log_file: &std::path::Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(log_file).with_context(|| format!("creating {}", log_file.display()))?;
        Ok(Self {
            lines: Mutex::default(),
            log: Mutex::new(Some(std::io::BufWriter::new(file))),
            listening: AtomicUsize::new(0),
            unplanned_exits: AtomicUsize::new(0),
        })
    }

    /// The lines from `from` on.
    pub fn lines_from(&self, from: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.get(from..).map(<[String]>::to_vec).unwrap_or_default()
    }

    /// How many times the process (any of its incarnations) logged that it listens.
    pub fn listening(&self) -> usize {
        self.listening.load(Ordering::SeqCst)
    }

    /// How many times it exited without being told to.
    pub fn unplanned_exits(&self) -> usize {
        self.unplanned_exits.load(Ordering::SeqCst)
    }

    fn push(&self, line: String) {
        if is_listening_line(&line) {
            self.listening.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(log) = self.log.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            let _ = writeln!(log, "{line}");
        }
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).push(line);
    }

    fn flush(&self) {
        if let Some(log) = self.log.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            let _ = log.flush();
        }
    }
}

/// The message of a JSON log line (`SHOP_LOG_FORMAT=json`), with its fields.
pub fn log_fields(line: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let record: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    record.get("fields")?.as_object().cloned()
}

/// Whether `line` is a service's "listening" (or the gateway's "gateway listening") line.
fn is_listening_line(line: &str) -> bool {
    log_fields(line)
        .and_then(|fields| fields.get("message")?.as_str().map(str::to_owned))
        .is_some_and(|message| message == "listening" || message == "gateway listening")
}

/// What the supervisor is asked to do.
enum Control {
    /// SIGKILL the process, wait `down`, start it again; answer when started.
    Kill { down: Duration, done: oneshot::Sender<()> },
}

/// The running incarnation of a process, shared by the supervisor and its handle (which kills
/// it synchronously when dropped, so nothing of the campaign outlives it).
type Current = Arc<Mutex<Option<Child>>>;

/// How often the supervisor looks whether its process has exited.
const POLL: Duration = Duration::from_millis(100);

/// A supervised child process.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    output: Arc<Output>,
    control: mpsc::Sender<Control>,
    current: Current,
    task: JoinHandle<()>,
}

impl Supervised {
    /// Starts `program` with exactly `env`, writing its output to `log_file`.
    pub fn start(name: &str, program: PathBuf, env: Vec<(String, String)>, log_file: PathBuf) -> anyhow::Result<Self> {
        let output = Arc::new(Output::new(&log_file)?);
        let (control, requests) = mpsc::channel(4);
        let current = Current::default();
        let supervisor = Supervisor {
            name: name.to_owned(),
            program,
            env,
            output: Arc::clone(&output),
            current: Arc::clone(&current),
        };
        let task = tokio::spawn(supervisor.run(requests));
        Ok(Self {
            name: name.to_owned(),
            output,
            control,
            current,
            task,
        })
    }

    /// Its output.
    pub fn output(&self) -> &Arc<Output> {
        &self.output
    }

    /// Waits up to `timeout` for the process to log that it listens for the `count`th time.
    pub async fn wait_listening(&self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.output.listening() < count {
            if Instant::now() >= deadline {
                bail!("{} did not start listening within {timeout:?} (see its log)", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// SIGKILLs the process, keeps it down for `down`, starts it again and waits (up to
    /// `timeout`) until it listens.
    pub async fn kill_and_restart(&self, down: Duration, timeout: Duration) -> anyhow::Result<()> {
        let before = self.output.listening();
        let (done, started) = oneshot::channel();
        self.control
            .send(Control::Kill { down, done })
            .await
            .context("the supervisor has stopped")?;
        started.await.context("the supervisor has stopped")?;
        self.wait_listening(before + 1, timeout).await
    }

    /// Stops supervising and SIGKILLs the process.
    fn kill(&self) {
        self.task.abort();
        if let Some(child) = lock(&self.current).as_mut() {
            let _ = child.start_kill();
        }
        self.output.flush();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lock(current: &Current) -> std::sync::MutexGuard<'_, Option<Child>> {
    current.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The task that keeps a process running.
struct Supervisor {
    name: String,
    program: PathBuf,
    env: Vec<(String, String)>,
    output: Arc<Output>,
    current: Current,
}

impl Supervisor {
    async fn run(self, mut requests: mpsc::Receiver<Control>) {
        let mut restart_pause = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        loop {
            match self.spawn() {
                Ok(child) => *lock(&self.current) = Some(child),
                Err(error) => {
                    self.output
                        .push(format!("[campaign] cannot start {}: {error}", self.name));
                    tokio::time::sleep(restart_pause.next_pause()).await;
                    continue;
                }
            }
            let started = Instant::now();
            loop {
                let exited = lock(&self.current)
                    .as_mut()
                    .and_then(|child| child.try_wait().transpose());
                if let Some(status) = exited {
                    self.output.unplanned_exits.fetch_add(1, Ordering::SeqCst);
                    let status = status.map_or_else(|error| error.to_string(), |status| status.to_string());
                    self.output.push(format!(
                        "[campaign] {} exited on its own ({status}); starting it again",
                        self.name
                    ));
                    if started.elapsed() >= STARTED_FINE_AFTER {
                        restart_pause.reset();
                    }
                    tokio::time::sleep(restart_pause.next_pause()).await;
                    break;
                }
                match tokio::time::timeout(POLL, requests.recv()).await {
                    Err(_) => {}
                    Ok(Some(Control::Kill { down, done })) => {
                        self.kill_current().await;
                        self.output
                            .push(format!("[campaign] {} SIGKILLed; down for {down:?}", self.name));
                        restart_pause.reset();
                        tokio::time::sleep(down).await;
                        // Started again at the outer loop's top; the caller waits for it to listen.
                        let _ = done.send(());
                        break;
                    }
                    // Nobody can ask anything any more: the campaign is over.
                    Ok(None) => {
                        self.kill_current().await;
                        return;
                    }
                }
            }
        }
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let mut child = Command::new(&self.program)
            .env_clear()
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(collect(stdout, Arc::clone(&self.output), ""));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(collect(stderr, Arc::clone(&self.output), "[stderr] "));
        }
        Ok(child)
    }

    /// SIGKILLs the current incarnation and reaps it.
    async fn kill_current(&self) {
        let child = lock(&self.current).take();
        if let Some(mut child) = child {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }
}

async fn collect(stream: impl AsyncRead + Unpin, output: Arc<Output>, mark: &'static str) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        output.push(format!("{mark}{line}"));
    }
}
