//! Where verification codes are read: from the mails a real SMTP server received
//! (`shop_platform::testing::smtp`), or from the log of a process on the default `log://` mail
//! transport.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use shop_platform::testing::smtp::MAIL_TIMEOUT;
pub use shop_platform::testing::smtp::SmtpSink;

use crate::process::{Output, log_fields};

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
            Self::Smtp(sink) => {
                let text = sink.next_mail_to(to).await.text.unwrap_or_default();
                code_in(&text).unwrap_or_else(|| panic!("no code in the mail to {to}: {text}"))
            }
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
