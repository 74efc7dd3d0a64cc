//! Typed configuration from the environment (twelve-factor). Each binary declares one struct
//! and loads it through [`Env`], a trait tests fake with a map, so no code reads process
//! variables directly and no test mutates them. Values are validated up front; a bad value
//! stops the process with a message naming the variable and exit code [`EXIT_BAD_CONFIG`].

use std::{collections::HashMap, fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

pub use secrecy::{ExposeSecret, SecretString};

/// The exit code for bad configuration (`EX_USAGE` in sysexits.h).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// A bad configuration value: which variable, what it held, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub key: String,
    /// Why its value was refused.
    pub reason: String,
}

impl ConfigError {
    /// A refusal of the value of `key`.
    pub fn new(key: &str, reason: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Where configuration comes from: the process environment, or a map in tests.
pub trait Env: Send + Sync {
    /// The value of `key`, if set and not empty.
    fn var(&self, key: &str) -> Option<String>;

    /// `key` parsed with `FromStr`, or `default` when unset.
    fn parse_or<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.var(key) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|error| ConfigError::new(key, format!("{raw:?}: {error}"))),
        }
    }

    /// A socket address such as `127.0.0.1:8080`, or `default`.
    fn addr_or(&self, key: &str, default: &str) -> Result<SocketAddr, ConfigError> {
        let raw = self.var(key).unwrap_or_else(|| default.to_owned());
        raw.trim()
            .parse()
            .map_err(|_| ConfigError::new(key, format!("{raw:?} is not an address like 127.0.0.1:8080")))
    }

    /// A duration such as `500ms`, `30s`, `2h` or `1d`, or `default`.
    fn duration_or(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.var(key) {
            None => Ok(default),
            Some(raw) => parse_duration(&raw).map_err(|reason| ConfigError::new(key, reason)),
        }
    }

    /// A URL whose scheme is one of `schemes`, or `default`.
    fn url_or(&self, key: &str, default: &str, schemes: &[&str]) -> Result<String, ConfigError> {
        let raw = self.var(key).unwrap_or_else(|| default.to_owned());
        let url = url::Url::parse(raw.trim()).map_err(|error| ConfigError::new(key, format!("not a URL: {error}")))?;
        if !schemes.contains(&url.scheme()) {
            return Err(ConfigError::new(
                key,
                format!("scheme {:?} is not one of {}", url.scheme(), schemes.join(", ")),
            ));
        }
        Ok(raw.trim().to_owned())
    }

    /// A secret (never printed by `Debug`), if set.
    fn secret(&self, key: &str) -> Option<SecretString> {
        self.var(key).map(SecretString::from)
    }

    /// A filesystem path, or `default`.
    fn path_or(&self, key: &str, default: impl FnOnce() -> PathBuf) -> PathBuf {
        self.var(key).map(PathBuf::from).unwrap_or_else(default)
    }
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|value| !value.trim().is_empty())
    }
}

/// A fixed set of variables, for tests and for embedding one configuration in another.
#[derive(Clone, Debug, Default)]
pub struct MapEnv(pub HashMap<String, String>);

impl MapEnv {
    /// An environment holding exactly `pairs`.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
    }
}

impl Env for MapEnv {
    fn var(&self, key: &str) -> Option<String> {
        self.0.get(key).filter(|value| !value.trim().is_empty()).cloned()
    }
}

/// Parses `500ms`, `30s`, `15m`, `2h`, `1d` (a whole number and a unit).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 500ms, 30s, 15m, 2h or 1d"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{raw:?} has no unit: use ms, s, m, h or d")),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{raw:?} is too long"))
}

/// Prints a configuration error and exits with [`EXIT_BAD_CONFIG`]; for `main` functions.
pub fn exit_on_bad_config<T>(result: Result<T, ConfigError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(EXIT_BAD_CONFIG)
        }
    }
}

/// Hides a URL's password for logs: `amqp://guest:***@host/`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        for raw in ["", "10", "s", "1.5h", "-1s", "3 weeks", "99999999999999999d"] {
            assert!(parse_duration(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn env_values_are_typed_and_errors_name_the_variable() {
        let env = MapEnv::from_pairs([("ADDR", "nope"), ("WAIT", "2h"), ("URL", "ftp://x")]);
        assert_eq!(
            env.duration_or("WAIT", Duration::ZERO).ok(),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            env.duration_or("UNSET", Duration::from_secs(1)).ok(),
            Some(Duration::from_secs(1))
        );
        let error = env.addr_or("ADDR", "127.0.0.1:1").err().map(|e| e.key);
        assert_eq!(error.as_deref(), Some("ADDR"));
        assert!(env.url_or("URL", "redis://x", &["redis", "memory"]).is_err());
        assert_eq!(
            env.url_or("UNSET", "memory://", &["redis", "memory"]).ok().as_deref(),
            Some("memory://")
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let env = MapEnv::from_pairs([("A", "  ")]);
        assert_eq!(env.var("A"), None);
    }

    #[test]
    fn secrets_do_not_print() {
        let env = MapEnv::from_pairs([("PASSWORD", "hunter2")]);
        let secret = env.secret("PASSWORD");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.map(|s| s.expose_secret().to_owned()).as_deref(), Some("hunter2"));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:pw@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
