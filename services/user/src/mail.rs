//! Outgoing mail: verification codes and "you already have an account" notices, each an HTML +
//! plain-text message sent through lettre over SMTP, or written to the log for local runs.
//!
//! `SMTP_URL` chooses the transport: `smtp://host:port` talks plain SMTP (local sinks only),
//! `smtp://user:pass@host:port?tls=starttls` upgrades with STARTTLS (refusing servers that cannot),
//! `smtps://user:pass@host:port` uses TLS from the first byte, and `log://` logs each message.

use std::time::Duration;

use anyhow::Context as _;
use lettre::{
    AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::authentication::Credentials,
};

use crate::domain::Email;

/// Bound on one SMTP exchange, so a stuck server fails the request instead of hanging it.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The recipient.
    pub to: Email,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
}

impl Mail {
    /// The message carrying a verification code.
    pub fn verification_code(to: &Email, code: &str, valid_for: Duration) -> Self {
        let minutes = valid_for.as_secs().div_ceil(60).max(1);
        Self {
            to: to.clone(),
            subject: format!("Your shop verification code: {code}"),
            text: format!(
                "Your verification code is: {code}\n\nEnter it to confirm your email address. It expires in \
                 {minutes} minute(s) and can be tried 5 times.\n\nIf you did not ask for it, ignore this message.\n"
            ),
            html: format!(
                "<!doctype html><html><body><p>Your verification code is:</p>\
                 <p style=\"font-size:24px;font-weight:bold;letter-spacing:4px\">{code}</p>\
                 <p>Enter it to confirm your email address. It expires in {minutes} minute(s).</p>\
                 <p>If you did not ask for it, ignore this message.</p></body></html>"
            ),
        }
    }

    /// The message sent instead of a code when the address already has an account.
    pub fn already_registered(to: &Email) -> Self {
        Self {
            to: to.clone(),
            subject: "You already have a shop account".to_owned(),
            text: "Someone asked to sign up to shop with this email address, which already has an account.\n\n\
                   If it was you, sign in instead (or change your password if you forgot it).\n\
                   If it was not you, ignore this message: your account is unchanged.\n"
                .to_owned(),
            html: "<!doctype html><html><body>\
                   <p>Someone asked to sign up to shop with this email address, which already has an account.</p>\
                   <p>If it was you, sign in instead (or change your password if you forgot it).</p>\
                   <p>If it was not you, ignore this message: your account is unchanged.</p></body></html>"
                .to_owned(),
        }
    }
}

/// Sends mail through the transport `SMTP_URL` names.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Log,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let transport = match self.transport {
            Transport::Smtp(_) => "smtp",
            Transport::Log => "log",
        };
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("transport", &transport)
            .finish()
    }
}

impl Mailer {
    /// A mailer for `url`, sending as `from`.
    pub fn new(url: &str, from: &str) -> anyhow::Result<Self> {
        let from: Mailbox = from
            .parse()
            .with_context(|| format!("SHOP_MAIL_FROM {from:?} is not a mailbox"))?;
        Ok(Self {
            from,
            transport: Settings::parse(url)?.transport()?,
        })
    }

    /// Checks the settings at start, without connecting.
    pub fn check_settings(url: &str, from: &str) -> Result<(), String> {
        from.parse::<Mailbox>()
            .map_err(|_| format!("SHOP_MAIL_FROM {from:?} is not a mailbox"))?;
        Settings::parse(url).map(drop).map_err(|error| format!("{error:#}"))
    }

    /// Sends `mail`.
    pub async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        match &self.transport {
            Transport::Log => {
                // The local-run transport: the message is the log line (codes included).
                tracing::info!(to = %mail.to, subject = %mail.subject, body = %mail.text, "mail (log transport)");
                Ok(())
            }
            Transport::Smtp(smtp) => {
                let to: Mailbox = mail.to.as_str().parse().context("recipient address")?;
                let message = Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(mail.subject.clone())
                    .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
                    .context("building the message")?;
                smtp.send(message).await.context("sending through SMTP")?;
                Ok(())
            }
        }
    }
}

/// What an `SMTP_URL` says, checked without connecting (and without a runtime).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settings {
    Log,
    Smtp {
        host: String,
        port: Option<u16>,
        tls: TlsMode,
        credentials: Option<(String, String)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    None,
    StartTls,
    Wrapper,
}

impl Settings {
    fn parse(raw: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(raw).context("SMTP_URL is not a URL")?;
        if url.scheme() == "log" {
            return Ok(Self::Log);
        }
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .context("SMTP_URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = url
            .query_pairs()
            .find(|(key, _)| key == "tls")
            .map(|(_, value)| value.into_owned());
        let tls = match (url.scheme(), tls.as_deref()) {
            ("smtps", None | Some("tls")) => TlsMode::Wrapper,
            ("smtp", Some("starttls")) => TlsMode::StartTls,
            ("smtp", None | Some("none")) => TlsMode::None,
            (scheme, tls) => anyhow::bail!("SMTP_URL: scheme {scheme} with tls={tls:?} is not supported"),
        };
        let credentials = (!url.username().is_empty()).then(|| {
            (
                percent_decode(url.username()),
                url.password().map(percent_decode).unwrap_or_default(),
            )
        });
        Ok(Self::Smtp {
            host,
            port: url.port(),
            tls,
            credentials,
        })
    }

    /// Builds the transport; needs a Tokio runtime (the connection pool runs a task).
    fn transport(self) -> anyhow::Result<Transport> {
        let Self::Smtp {
            host,
            port,
            tls,
            credentials,
        } = self
        else {
            return Ok(Transport::Log);
        };
        let builder = match tls {
            TlsMode::Wrapper => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)?,
            TlsMode::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)?,
            TlsMode::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
        };
        let mut builder = builder.timeout(Some(SMTP_TIMEOUT));
        if let Some(port) = port {
            builder = builder.port(port);
        }
        if let Some((user, password)) = credentials {
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(Transport::Smtp(builder.build()))
    }
}

/// Decodes the `%XX` escapes of a URL's user or password (a `+` stays a `+` there).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                index += 3;
            }
            None => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_url_form_is_accepted() {
        for url in [
            "log://",
            "smtp://127.0.0.1:2525",
            "smtp://user:p%40ss@mail.example.com:587?tls=starttls",
            "smtps://user:pass@mail.example.com:465",
            "smtps://mail.example.com",
        ] {
            assert!(
                Mailer::check_settings(url, "shop <no-reply@shop.localhost>").is_ok(),
                "{url}"
            );
        }
        for url in ["smtp://", "smtp://host?tls=sometimes", "smtps://host?tls=starttls"] {
            assert!(
                Mailer::check_settings(url, "shop <no-reply@shop.localhost>").is_err(),
                "{url}"
            );
        }
        assert!(Mailer::check_settings("log://", "not a mailbox").is_err());
    }

    #[test]
    fn credentials_are_percent_decoded() -> anyhow::Result<()> {
        assert_eq!(percent_decode("p%40ss+w%2"), "p@ss+w%2");
        let settings = Settings::parse("smtp://us%3Aer:p%40ss@mail.example.com:587?tls=starttls")?;
        assert_eq!(
            settings,
            Settings::Smtp {
                host: "mail.example.com".to_owned(),
                port: Some(587),
                tls: TlsMode::StartTls,
                credentials: Some(("us:er".to_owned(), "p@ss".to_owned())),
            }
        );
        Ok(())
    }

    #[tokio::test]
    async fn transports_build_inside_a_runtime() -> anyhow::Result<()> {
        for url in ["log://", "smtp://127.0.0.1:2525", "smtps://user:pass@mail.example.com"] {
            Mailer::new(url, "shop <no-reply@shop.localhost>")?;
        }
        Ok(())
    }

    #[test]
    fn code_mails_carry_the_code_in_both_bodies() -> anyhow::Result<()> {
        let to = Email::parse("ada@example.com")?;
        let mail = Mail::verification_code(&to, "012345", Duration::from_secs(300));
        assert!(mail.text.contains("012345") && mail.html.contains("012345"));
        assert!(mail.text.contains("5 minute"));
        let notice = Mail::already_registered(&to);
        assert!(!notice.text.chars().any(|c| c.is_ascii_digit()));
        Ok(())
    }
}
