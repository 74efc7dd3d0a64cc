//! A minimal SMTP receiver on loopback: the shop mails each sign-up's 6-digit code to it
//! (`SMTP_URL=smtp://127.0.0.1:<port>`), and the virtual users read their code from it. It
//! speaks just enough plain SMTP for one sender (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP,
//! QUIT), keeps only the codes, and forgets them once read.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::JoinHandle,
};

/// Longest line or message kept; a verification mail is a few kilobytes.
const MAX_MESSAGE: usize = 1 << 20;

/// Codes received, per recipient, oldest first.
#[derive(Debug, Default)]
struct Inbox {
    codes: Mutex<HashMap<String, Vec<String>>>,
    arrived: Notify,
}

/// The receiver; it stops listening when dropped.
#[derive(Debug)]
pub struct SmtpReceiver {
    addr: SocketAddr,
    inbox: Arc<Inbox>,
    task: JoinHandle<()>,
}

impl SmtpReceiver {
    /// Listens on `addr` (port 0: a free port).
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for SMTP on {addr}"))?;
        let addr = listener.local_addr()?;
        let inbox = Arc::new(Inbox::default());
        let accepting = Arc::clone(&inbox);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, Arc::clone(&accepting)));
            }
        });
        Ok(Self { addr, inbox, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `SMTP_URL` that makes the shop mail here.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The code of the next mail to `to`, waiting up to `timeout` for it.
    pub async fn next_code(&self, to: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so a mail arriving in between wakes us.
            let arrived = self.inbox.arrived.notified();
            {
                let mut codes = self.inbox.codes.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(queue) = codes
                    .get_mut(&to.to_ascii_lowercase())
                    .filter(|queue| !queue.is_empty())
                {
                    return Ok(queue.remove(0));
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                bail!(
                    "no verification mail to {to} within {timeout:?} (is the shop's SMTP_URL {}?)",
                    self.url()
                );
            }
        }
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One SMTP conversation.
async fn session(stream: TcpStream, inbox: Arc<Inbox>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut recipients: Vec<String> = Vec::new();
    if write.write_all(b"220 shop-load ESMTP\r\n").await.is_err() {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line.len() > MAX_MESSAGE => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
            b"250 shop-load\r\n"
        } else if command.starts_with("MAIL FROM") {
            recipients.clear();
            b"250 OK\r\n"
        } else if command.starts_with("RCPT TO") {
            recipients.push(address(line.trim_end()));
            b"250 OK\r\n"
        } else if command == "DATA" {
            if write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await.is_err() {
                return;
            }
            let Some(message) = read_data(&mut lines).await else {
                return;
            };
            if let Some(code) = code_in_mail(&message) {
                let mut codes = inbox.codes.lock().unwrap_or_else(PoisonError::into_inner);
                for to in recipients.drain(..) {
                    codes.entry(to).or_default().push(code.clone());
                }
                inbox.arrived.notify_waiters();
            }
            b"250 OK\r\n"
        } else if command == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else if command == "RSET" || command == "NOOP" {
            recipients.clear();
            b"250 OK\r\n"
        } else {
            b"502 not implemented\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// The message after DATA, up to the lone `.` line (dot-stuffing undone).
async fn read_data(lines: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> Option<String> {
    let mut message = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.ok()? == 0 || message.len() > MAX_MESSAGE {
            return None;
        }
        let content = line.trim_end_matches(['\r', '\n']);
        if content == "." {
            return Some(message);
        }
        message.push_str(content.strip_prefix('.').unwrap_or(content));
        message.push('\n');
    }
}

/// The address of `RCPT TO:<a@b>`, lower-cased.
fn address(command: &str) -> String {
    let argument = command.split_once(':').map_or("", |(_, rest)| rest);
    let argument = argument.split_whitespace().next().unwrap_or_default();
    argument.trim_matches(['<', '>']).to_ascii_lowercase()
}

/// The 6-digit code of a verification mail: read from its `Subject:` header
/// (`Your shop verification code: 123456`), which stays plain ASCII whatever encoding the body
/// gets.
pub fn code_in_mail(message: &str) -> Option<String> {
    const BEFORE: &str = "verification code: ";
    message
        .lines()
        .take_while(|line| !line.is_empty())
        .filter(|line| line.to_ascii_lowercase().starts_with("subject:"))
        .find_map(|subject| {
            let at = subject.find(BEFORE)? + BEFORE.len();
            let code = subject.get(at..at + 6)?;
            code.bytes().all(|b| b.is_ascii_digit()).then(|| code.to_owned())
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_read_from_the_subject_header_only() {
        let mail = "From: shop <no-reply@shop.localhost>\nSubject: Your shop verification code: 042917\n\
                    Content-Type: text/plain\n\nYour verification code is: 999999\n";
        assert_eq!(code_in_mail(mail).as_deref(), Some("042917"));
        assert_eq!(code_in_mail("Subject: Your shop verification code: 12ab56\n\nx"), None);
        // A code in the body alone (after the blank line) is not taken.
        assert_eq!(
            code_in_mail("Subject: Welcome\n\nSubject: verification code: 123456"),
            None
        );
    }

    #[test]
    fn recipients_are_read_from_rcpt_to() {
        assert_eq!(
            address("RCPT TO:<Buyer-1@Shop.Example.com>"),
            "buyer-1@shop.example.com"
        );
        assert_eq!(address("RCPT TO: <a@b.c> SIZE=10"), "a@b.c");
    }

    #[tokio::test]
    async fn a_mail_sent_over_smtp_hands_its_code_to_its_recipient() {
        let receiver = SmtpReceiver::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let stream = TcpStream::connect(receiver.addr()).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut replies = BufReader::new(read).lines();
        let mut expect = async |prefix: &str| {
            let reply = replies.next_line().await.unwrap().unwrap();
            assert!(reply.starts_with(prefix), "{reply}");
        };
        expect("220").await;
        for (command, reply) in [
            ("EHLO client\r\n", "250"),
            ("MAIL FROM:<no-reply@shop.localhost>\r\n", "250"),
            ("RCPT TO:<buyer@shop.example.com>\r\n", "250"),
            ("DATA\r\n", "354"),
            (
                "Subject: Your shop verification code: 314159\r\n\r\n..dot-stuffed\r\n.\r\n",
                "250",
            ),
            ("QUIT\r\n", "221"),
        ] {
            write.write_all(command.as_bytes()).await.unwrap();
            expect(reply).await;
        }
        let code = receiver
            .next_code("buyer@shop.example.com", Duration::from_secs(5))
            .await;
        assert_eq!(code.unwrap(), "314159");
        // Read once: a second read waits for a new mail.
        let again = receiver
            .next_code("buyer@shop.example.com", Duration::from_millis(100))
            .await;
        assert!(again.is_err());
    }
}
