//! The Redis cache through `fred`: one multiplexed connection that reconnects by itself with
//! exponential backoff; every command has a timeout so a dead server fails calls quickly
//! instead of hanging them. Counters are changed by one Lua script ([`COUNTERS`]): a counter
//! gets its expiry in the same atomic step that creates it, so a crash can never leave one that
//! lives forever, and a batch of counters is one command, one write and one round trip (the
//! `MULTI` it replaces went out as a write per command: five for one counter).

use std::time::Duration;

use async_trait::async_trait;
use fred::{
    prelude::{
        Builder, Client, ClientLike, Config, Error as FredError, Expiration, KeysInterface, ReconnectPolicy, SetOptions,
    },
    types::{Value, scripts::Script},
};

use super::{Cache, CacheError, Counted, ttl_millis};

/// Adds to counters. `KEYS`: the counters; `ARGV[1]`: the expiry in milliseconds given to a
/// counter that has none (the one its first increment just created, so the window is fixed
/// from the first hit); `ARGV[i + 1]`: what to add to `KEYS[i]`. Returns each counter's new
/// count and the milliseconds it has left, of the same moment.
const COUNTERS: &str = r"
local replies = {}
for i, key in ipairs(KEYS) do
  replies[2 * i - 1] = redis.call('INCRBY', key, ARGV[i + 1])
  redis.call('PEXPIRE', key, ARGV[1], 'NX')
  replies[2 * i] = redis.call('PTTL', key)
end
return replies
";

/// A Redis-backed [`Cache`].
#[derive(Clone)]
pub struct RedisCache {
    client: Client,
    prefix: String,
    counters: Script,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Connects to `url` (`redis://[user:pass@]host:port[/db]`), with every key under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CacheError> {
        let config = Config::from_url(url).map_err(|error| CacheError::BadUrl(format!("{error}")))?;
        let client = Builder::from_config(config)
            .with_performance_config(|performance| {
                performance.default_command_timeout = Duration::from_secs(2);
            })
            .with_connection_config(|connection| {
                connection.connection_timeout = Duration::from_secs(3);
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()
            .map_err(unavailable)?;
        // The reconnect policy retries forever in the background; the first connection must
        // succeed promptly or start-up fails with a clear error.
        match tokio::time::timeout(Duration::from_secs(5), client.init()).await {
            Ok(Ok(_task)) => {}
            Ok(Err(error)) => return Err(unavailable(error)),
            Err(_) => {
                let _ = client.quit().await;
                return Err(CacheError::Unavailable(format!(
                    "no answer from {} within 5 s",
                    crate::config::redact_url(url)
                )));
            }
        }
        Ok(Self {
            client,
            prefix: prefix.to_owned(),
            counters: Script::from_lua(COUNTERS),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

fn unavailable(error: FredError) -> CacheError {
    CacheError::Unavailable(error.to_string())
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.client.get(self.key(key)).await.map_err(unavailable)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        self.client
            .set::<(), _, _>(self.key(key), value, Some(Expiration::PX(ttl_millis(ttl))), None, false)
            .await
            .map_err(unavailable)
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let reply: Option<String> = self
            .client
            .set(
                self.key(key),
                value,
                Some(Expiration::PX(ttl_millis(ttl))),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(unavailable)?;
        Ok(reply.is_some())
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let removed: i64 = self.client.del(self.key(key)).await.map_err(unavailable)?;
        Ok(removed > 0)
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.client.getdel(self.key(key)).await.map_err(unavailable)
    }

    async fn increment(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let counted = self.add_to_counters(&[(key.to_owned(), 1)], ttl).await?;
        Ok(counted[0].count)
    }

    async fn add_to_counters(&self, deltas: &[(String, i64)], ttl: Duration) -> Result<Vec<Counted>, CacheError> {
        if deltas.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = deltas.iter().map(|(key, _)| self.key(key)).collect();
        let args: Vec<Value> = std::iter::once(Value::Integer(ttl_millis(ttl)))
            .chain(deltas.iter().map(|(_, delta)| Value::Integer(*delta)))
            .collect();
        // EVALSHA; the script is loaded once more when the server does not know it (a restart).
        let replies: Vec<Value> = self
            .counters
            .evalsha_with_reload(&self.client, keys, args)
            .await
            .map_err(unavailable)?;
        let counted = replies
            .chunks(2)
            .filter_map(|reply| match reply {
                [count, millis] => Some(Counted {
                    count: count.as_i64()?,
                    // -1: no expiry; -2 cannot happen right after INCRBY.
                    ttl: millis
                        .as_i64()
                        .and_then(|millis| u64::try_from(millis).ok())
                        .map(Duration::from_millis),
                }),
                _ => None,
            })
            .collect::<Vec<_>>();
        if counted.len() != deltas.len() {
            return Err(CacheError::Unavailable(format!(
                "{} counters added, {} read back",
                deltas.len(),
                counted.len()
            )));
        }
        Ok(counted)
    }

    async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        let count: i64 = self.client.exists(self.key(key)).await.map_err(unavailable)?;
        Ok(count > 0)
    }

    async fn time_to_live(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let millis: i64 = self.client.pttl(self.key(key)).await.map_err(unavailable)?;
        // -2: no such key; -1: no expiry.
        Ok(u64::try_from(millis).ok().map(Duration::from_millis))
    }

    async fn ready(&self) -> bool {
        self.client.ping::<String>(None).await.is_ok()
    }
}
