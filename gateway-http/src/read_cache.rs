//! The edge read cache: the public catalog reads (`GET /products/{id}`, its `/stock`, and the
//! list pages) answered from memory for a short, explicit time, instead of a gRPC call and a
//! database query each.
//!
//! Only what is the same for every caller is stored: answers fetched ANONYMOUSLY (what anyone
//! may see: a visible product, its stock, a page of listed products), never an answer made for
//! a signed-in caller. A hidden product is found only by its seller and admins; for them the
//! anonymous fetch fails (404) and the gateway asks again with their identity, and that answer
//! is sent `private, no-store` and kept nowhere.
//!
//! Freshness: an entry lives `SHOP_EDGE_CACHE_TTL` (1 s by default; 0 turns the cache off).
//! Concurrent misses of one key make ONE upstream call (the others wait for it). A write through
//! this gateway (create, update, delete, set stock) makes every entry it may change stale at
//! once: entries remember the write sequence number at which their fetch started, and one
//! fetched before a later write of its product (or, for list pages, of any product) is never
//! served again. Writes through other replicas, and the stock an order takes (reserved by the
//! catalog asynchronously), are seen within the TTL.
//!
//! Each entry is a [`Fixed`] response: its strong `ETag`, gzip variant and `304` handling are
//! those of the gateway's other fixed responses; `Cache-Control: public, max-age=<TTL>` lets a
//! CDN keep it as long, and `Age` says how old an answer from the cache is.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    body::Bytes,
    http::{HeaderMap, HeaderValue, header},
    response::Response,
};
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use crate::{
    dto::BadReply,
    fixed::{Fixed, Freshness},
    problem::ApiError,
};

/// Stripes of the per-product write sequence: a fixed table instead of one entry per product
/// ever written (a collision only makes some other product's entries refetch early).
const STRIPES: usize = 1024;

/// What a public read is cached under: the normalised request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReadKey {
    /// `GET /products/{id}`.
    Product(Uuid),
    /// `GET /products/{id}/stock`.
    Stock(Uuid),
    /// `GET /products?…`: the query's parameters, parsed, in one fixed order.
    List(String),
}

/// Why an answer was not stored.
#[derive(Clone, Debug)]
pub enum Uncached {
    /// The fetch failed; errors are never stored.
    Failed(ApiError),
    /// The answer is not the same for everyone.
    NotPublic,
}

impl From<ApiError> for Uncached {
    fn from(error: ApiError) -> Self {
        Self::Failed(error)
    }
}

impl From<tonic::Status> for Uncached {
    fn from(status: tonic::Status) -> Self {
        Self::Failed(status.into())
    }
}

impl From<BadReply> for Uncached {
    fn from(error: BadReply) -> Self {
        Self::Failed(error.into())
    }
}

/// A stored answer.
#[derive(Debug)]
struct Entry {
    response: Fixed,
    fetched_at: Instant,
    /// The write sequence number when its fetch started.
    seq: u64,
}

/// An answer to serve, and whether it came from the cache.
#[derive(Debug)]
pub struct Served {
    entry: Arc<Entry>,
    from_cache: bool,
}

impl Served {
    /// The response to a request with `request` headers: 200 with the body, or 304.
    pub fn respond(&self, request: &HeaderMap) -> Response {
        let mut response = self.entry.response.respond(request);
        if self.from_cache {
            let age = self.entry.fetched_at.elapsed().as_secs();
            response.headers_mut().insert(header::AGE, HeaderValue::from(age));
        }
        response
    }
}

/// The cache of public catalog reads (see the module).
#[derive(Debug)]
pub struct ReadCache {
    /// `None` when turned off.
    entries: Option<moka::future::Cache<ReadKey, Arc<Entry>>>,
    ttl: Duration,
    /// Writes through this gateway so far.
    writes: AtomicU64,
    /// The sequence number of the last write that may change a list page.
    lists_written: AtomicU64,
    /// The sequence number of the last write of a product, by stripe.
    products_written: Box<[AtomicU64]>,
}

impl ReadCache {
    /// A cache keeping answers `ttl` (zero: none), at most `capacity` of them (least recently
    /// and least often used first out).
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let entries = (!ttl.is_zero() && capacity > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build()
        });
        Self {
            entries,
            ttl,
            writes: AtomicU64::new(0),
            lists_written: AtomicU64::new(0),
            products_written: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The public answer for `key`: from the cache while fresh, or the body `fetch` makes of
    /// the anonymous answer (one fetch for concurrent misses of a key). `fetch` may run again
    /// when what it fetched was overtaken by a write through this gateway.
    pub async fn get_or_fetch<F, Fut>(&self, key: ReadKey, fetch: F) -> Result<Served, Uncached>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Bytes, Uncached>>,
    {
        let Some(entries) = &self.entries else {
            return self.fetch_uncached(&fetch).await;
        };
        // Twice at most: a second stale entry means writes keep landing; then answer uncached.
        for _ in 0..2 {
            let mut fetched_here = false;
            let entry = entries
                .try_get_with(key.clone(), async {
                    fetched_here = true;
                    let seq = self.writes.load(Ordering::SeqCst);
                    let body = fetch().await?;
                    Ok::<_, Uncached>(Arc::new(self.entry(body, seq)))
                })
                .await
                .map_err(|error| (*error).clone())?;
            if entry.seq >= self.last_write_of(&key) {
                return Ok(Served {
                    entry,
                    from_cache: !fetched_here,
                });
            }
            entries.invalidate(&key).await;
        }
        self.fetch_uncached(&fetch).await
    }

    async fn fetch_uncached<F, Fut>(&self, fetch: &F) -> Result<Served, Uncached>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Bytes, Uncached>>,
    {
        let seq = self.writes.load(Ordering::SeqCst);
        let body = fetch().await?;
        Ok(Served {
            entry: Arc::new(self.entry(body, seq)),
            from_cache: false,
        })
    }

    fn entry(&self, body: Bytes, seq: u64) -> Entry {
        Entry {
            response: Fixed::new(body, "application/json", Freshness::For(self.ttl)),
            fetched_at: Instant::now(),
            seq,
        }
    }

    /// Notes a write through this gateway of `product` (`None`: a new product, which changes
    /// only list pages), after the catalog answered it (or failed to: it may have happened):
    /// every entry it may change is stale from now on.
    pub fn written(&self, product: Option<Uuid>) {
        let seq = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        self.lists_written.fetch_max(seq, Ordering::SeqCst);
        if let Some(id) = product {
            self.products_written[stripe(id)].fetch_max(seq, Ordering::SeqCst);
        }
    }

    fn last_write_of(&self, key: &ReadKey) -> u64 {
        match key {
            ReadKey::Product(id) | ReadKey::Stock(id) => self.products_written[stripe(*id)].load(Ordering::SeqCst),
            ReadKey::List(_) => self.lists_written.load(Ordering::SeqCst),
        }
    }
}

fn stripe(id: Uuid) -> usize {
    // The low bits of a v4 or v7 id are random.
    (id.as_u64_pair().1 as usize) % STRIPES
}

/// The documented `304 Not Modified` of the cached reads (never built: it only describes).
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 304,
    description = "The copy the client holds (`If-None-Match`) is current: no body.",
    headers(
        ("ETag" = String, description = "The current strong validator."),
        ("Cache-Control" = String, description = "As on the 200."),
        ("Age" = u64, description = "As on the 200."),
    )
)]
#[allow(dead_code)]
pub struct NotModified;

/// The JSON body of an answer.
pub fn json_body(value: &impl Serialize) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|_| ApiError::from(BadReply("an answer JSON can hold")))
}

/// An answer for this caller only: validated like the others (`ETag`, 304), stored nowhere.
pub fn private(value: &impl Serialize, request: &HeaderMap) -> Result<Response, ApiError> {
    Ok(Fixed::new(json_body(value)?, "application/json", Freshness::Private).respond(request))
}
