//! A real SMTP server on loopback (aiosmtpd, `smtp_sink.py` beside this module), one per test,
//! and the mails it received: the user service's tests and the shop's journeys read
//! verification codes from it.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
    sync::Notify,
};

/// How long a mail may take to arrive.
pub const MAIL_TIMEOUT: Duration = Duration::from_secs(20);

/// A mail the SMTP server received.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Mail {
    /// Envelope recipients.
    pub to: Vec<String>,
    /// Subject line.
    pub subject: String,
    /// MIME type of the whole message.
    pub content_type: String,
    /// The text/plain part.
    pub text: Option<String>,
    /// The text/html part.
    pub html: Option<String>,
}

impl Mail {
    /// The 6-digit code in the text part.
    pub fn code(&self) -> String {
        let text = self.text.as_deref().expect("a text part");
        let at = text.find("code is: ").expect("a code in the mail") + "code is: ".len();
        let code = &text[at..at + 6];
        assert!(code.bytes().all(|b| b.is_ascii_digit()), "{text}");
        code.to_owned()
    }
}

/// A real SMTP server on loopback; every message it receives is kept for the test to read.
#[derive(Debug)]
pub struct SmtpSink {
    /// Its port.
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    arrived: Arc<Notify>,
    _process: Child,
}

impl SmtpSink {
    /// Starts the server (`python3 smtp_sink.py`; `SHOP_TEST_PYTHON` names another Python).
    pub async fn start() -> Self {
        let python = std::env::var("SHOP_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let mut process = Command::new(&python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/src/testing/smtp_sink.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("{python} with aiosmtpd (pip install aiosmtpd) must run smtp_sink.py: {error}")
            });
        let mut lines = BufReader::new(process.stdout.take().expect("stdout")).lines();
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
        let arrived = Arc::new(Notify::new());
        let (sink, notify) = (Arc::clone(&mails), Arc::clone(&arrived));
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mail: Mail = serde_json::from_str(&line).expect("a mail record");
                sink.lock().unwrap().push(mail);
                notify.notify_waiters();
            }
        });
        Self {
            port,
            mails,
            arrived,
            _process: process,
        }
    }

    fn take(&self, to: &str) -> Option<Mail> {
        let mut mails = self.mails.lock().unwrap();
        let at = mails.iter().position(|mail| mail.to.iter().any(|rcpt| rcpt == to))?;
        Some(mails.remove(at))
    }

    /// The next mail to `to`, waiting up to [`MAIL_TIMEOUT`] for it.
    pub async fn next_mail_to(&self, to: &str) -> Mail {
        let wait = async {
            loop {
                let arrived = self.arrived.notified();
                if let Some(mail) = self.take(to) {
                    return mail;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(MAIL_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| panic!("no mail to {to} within {MAIL_TIMEOUT:?}"))
    }

    /// How many mails to `to` are waiting.
    pub fn count_to(&self, to: &str) -> usize {
        let mails = self.mails.lock().unwrap();
        mails
            .iter()
            .filter(|mail| mail.to.iter().any(|rcpt| rcpt == to))
            .count()
    }
}
