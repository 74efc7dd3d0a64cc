//! Where verification codes are read: from the mails a real SMTP server received (aiosmtpd,
//! the user service's `tests/smtp_sink.py`), or from the log of a process on the default
//! `log://` mail transport.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

use crate::process::{Output, log_fields};

/// How long a code may take to arrive.
const MAIL_TIMEOUT: Duration = Duration::from_secs(20);

/// How a test reads the codes the shop mails.
pub enum Mailbox {
    /// Mails sent over SMTP to a sink on loopback.
    Smtp(SmtpSink),
    /// Mails written to a process's JSON log (`SMTP_URL` unset: `log://`).
    Log {
        /// The output of the process that logs the mails.
        output: Arc<Output>,
        /// Codes already read, per address, so each read waits for a new mail.
        read: Mutex<HashMap<String, usize>>,
    },
}

impl Mailbox {
    /// Codes from the log in `output`.
    pub fn log(output: Arc<Output>) -> Self {
        Self::Log {
            output,
            read: Mutex::default(),
        }
    }

    /// The code of the next verification mail to `to`, waiting for it.
    pub async fn next_code(&self, to: &str) -> String {
        match self {
            Self::Smtp(sink) => sink.next_code(to).await,
            Self::Log { output, read } => {
                let deadline = Instant::now() + MAIL_TIMEOUT;
                loop {
                    let codes: Vec<String> = output
                        .lines_from(0)
                        .iter()
                        .filter_map(|line| log_fields(line, "mail (log transport)"))
                        .filter(|fields| fields.get("to").and_then(|v| v.as_str()) == Some(to))
                        .filter_map(|fields| code_in(fields.get("subject")?.as_str()?))
                        .collect();
                    {
                        let mut read = read.lock().unwrap();
                        let taken = read.entry(to.to_owned()).or_default();
                        if let Some(code) = codes.get(*taken) {
                            *taken += 1;
                            return code.clone();
                        }
                    }
                    assert!(
                        Instant::now() < deadline,
                        "no verification code for {to} in the log within {MAIL_TIMEOUT:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// The 6-digit code after the last `: ` of a verification mail's subject or text.
fn code_in(text: &str) -> Option<String> {
    let at = text.find("code is: ").map(|at| at + "code is: ".len()).or_else(|| {
        let at = text.find("verification code: ")?;
        Some(at + "verification code: ".len())
    })?;
    let code = text.get(at..at + 6)?;
    code.bytes().all(|b| b.is_ascii_digit()).then(|| code.to_owned())
}

/// A mail the SMTP server received: its envelope recipients and its text part.
#[derive(Debug, Clone)]
struct Mail {
    to: Vec<String>,
    text: Option<String>,
}

impl Mail {
    /// A mail as `smtp_sink.py` prints it, one JSON object a line.
    fn parse(line: &str) -> Self {
        let record: serde_json::Value = serde_json::from_str(line).expect("a mail record");
        Self {
            to: record["to"]
                .as_array()
                .expect("recipients")
                .iter()
                .filter_map(|rcpt| rcpt.as_str().map(str::to_owned))
                .collect(),
            text: record["text"].as_str().map(str::to_owned),
        }
    }
}

/// A real SMTP server on loopback; every message it receives is kept for the test to read.
pub struct SmtpSink {
    /// Its port.
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    _process: Child,
}

impl SmtpSink {
    /// Starts the server (`python3`, or the Python `SHOP_TEST_PYTHON` names, with aiosmtpd).
    pub async fn start() -> Self {
        let python = std::env::var("SHOP_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../services/user/tests/smtp_sink.py");
        let mut process = Command::new(&python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("{python} with aiosmtpd (pip install aiosmtpd) must run smtp_sink.py: {error}")
            });
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the SMTP server starts within 20 s")
            .expect("reading the SMTP server's output")
            .expect("the SMTP server prints its port (is aiosmtpd installed?)");
        let port = serde_json::from_str::<serde_json::Value>(&first).expect("JSON")["port"]
            .as_u64()
            .and_then(|port| u16::try_from(port).ok())
            .expect("a port");
        let mails = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&mails);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(Mail::parse(&line));
            }
        });
        Self {
            port,
            mails,
            _process: process,
        }
    }

    async fn next_code(&self, to: &str) -> String {
        let deadline = Instant::now() + MAIL_TIMEOUT;
        loop {
            {
                let mut mails = self.mails.lock().unwrap();
                if let Some(at) = mails.iter().position(|mail| mail.to.iter().any(|rcpt| rcpt == to)) {
                    let mail = mails.remove(at);
                    let text = mail.text.unwrap_or_default();
                    return code_in(&text).unwrap_or_else(|| panic!("no code in the mail to {to}: {text}"));
                }
            }
            assert!(Instant::now() < deadline, "no mail to {to} within {MAIL_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
