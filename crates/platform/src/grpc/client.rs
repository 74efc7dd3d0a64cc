//! gRPC client builder: turns a target (`dns://catalog.shop.svc.cluster.local:50051`,
//! `static://a:1,b:2`, `host:port`) into a client-side load-balanced [`GrpcChannel`] that
//! tonic-generated clients take as is (`CatalogClient::new(channel)`).
//!
//! Every call through the channel carries the caller's W3C trace context and a deadline (sent
//! as `grpc-timeout`), and is transparently retried on another endpoint when it provably never
//! reached a server (dead or draining backend): see [`GrpcChannel`] for the exact guarantee.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Uri};
use http_body::Frame;
use tokio::{sync::oneshot, time::Instant};
use tokio_util::sync::CancellationToken;
use tonic::{Status, body::Body, transport::Channel};
use tower::{Service, ServiceExt as _};
use tracing::Instrument as _;

use super::discovery::{self, Discovery, EndpointSettings, Nudge, Source};
pub use super::target::{Target, TargetError};
use super::{
    identity::Caller,
    in_process,
    mesh::{MeshIdentity, TOKEN_METADATA},
};
use crate::{
    backoff::Backoff,
    telemetry::{
        metrics::{RpcSide, RpcTimer},
        propagation, rpc,
    },
};

/// Error type of [`GrpcChannel`] calls (what tonic clients turn into a [`Status`]).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Longest deadline honoured (the header allows thousands of years, `Instant` arithmetic not).
const MAX_DEADLINE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Capacity of the discovery → balancer change queue. The balancer drains it only while it
/// serves calls, so an idle channel must absorb a burst of DNS changes without blocking.
const CHANGE_QUEUE: usize = 1024;

/// How a client connects, balances and times its calls.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Bound on establishing a TCP connection to one endpoint (and on a reachability probe).
    pub connect_timeout: Duration,
    /// Deadline of every call unless the caller set one (`tonic::Request::set_timeout`): the
    /// call fails with `DeadlineExceeded` once it passes, and the server is told through the
    /// `grpc-timeout` header. It bounds the wait for the response headers, retries included.
    pub request_timeout: Duration,
    /// How often a `dns://` target is resolved again (and unreachable addresses re-probed).
    pub refresh_interval: Duration,
    /// DNS server to ask; `None` uses the system configuration (resolv.conf).
    pub nameserver: Option<SocketAddr>,
    /// How many times a call that no server processed (refused connection, backend draining:
    /// see [`GrpcChannel`]) is sent again, to whichever endpoint the balancer picks.
    pub transparent_retries: u32,
    /// Pause before the first such retry, doubled for each following one: it gives discovery
    /// the time to eject the endpoint that refused the call.
    pub retry_backoff: Duration,
    /// Largest request body kept to replay a call; a call whose body is larger, or is still
    /// being produced when the call starts (a client stream), is never retried.
    pub retry_buffer_limit: usize,
    /// HTTP/2 PING interval, to detect a peer that vanished without closing the connection.
    pub keep_alive_interval: Option<Duration>,
    /// How long a PING may stay unanswered before the connection is dropped.
    pub keep_alive_timeout: Duration,
    /// Stops re-resolution when cancelled (the channel keeps its last endpoints). Discovery
    /// also stops on its own once every clone of the channel is dropped.
    pub shutdown: Option<CancellationToken>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(5),
            nameserver: None,
            transparent_retries: 4,
            retry_backoff: Duration::from_millis(10),
            retry_buffer_limit: 4 * 1024 * 1024,
            keep_alive_interval: Some(Duration::from_secs(30)),
            keep_alive_timeout: Duration::from_secs(10),
            shutdown: None,
        }
    }
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The target string is malformed.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The DNS resolver could not be configured (e.g. unreadable resolv.conf).
    #[error("cannot configure the DNS resolver: {0}")]
    Resolver(#[source] hickory_resolver::net::NetError),
    /// An option is out of range.
    #[error("invalid gRPC client option: {0}")]
    Options(&'static str),
}

/// Builds a load-balanced channel to `target`.
///
/// The endpoints are kept up to date by a background task (see [`super::discovery`]); this
/// waits for its first round, at most `connect_timeout`, so the first calls do not wait for it.
/// It never fails because a name does not resolve or a backend is down: calls report that.
pub async fn connect(target: &Target, options: &ClientOptions) -> Result<GrpcChannel, ClientError> {
    if options.refresh_interval.is_zero() {
        return Err(ClientError::Options("refresh_interval must be positive"));
    }
    if options.request_timeout.is_zero() {
        return Err(ClientError::Options("request_timeout must be positive"));
    }
    let mut in_process = None;
    let (source, origin) = match target {
        Target::Dns { host, port } => {
            let resolver = discovery::build_resolver(options.nameserver, options.refresh_interval)
                .map_err(ClientError::Resolver)?;
            let authority = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            // The logical name as `:authority`; not fatal if it does not form a URI.
            let origin = Uri::try_from(format!("http://{authority}")).ok();
            let source = Source::Dns {
                resolver: Box::new(resolver),
                host: host.clone(),
                port: *port,
            };
            (source, origin)
        }
        Target::Static(uris) => {
            in_process = in_process::single_address(uris);
            (Source::Fixed(uris.clone()), None)
        }
    };

    let (channel, changes) = Channel::balance_channel::<Uri>(CHANGE_QUEUE);
    let nudge = Nudge::default();
    let discovery = Discovery {
        target: target.to_string(),
        source,
        settings: EndpointSettings {
            connect_timeout: options.connect_timeout,
            keep_alive: options
                .keep_alive_interval
                .map(|interval| (interval, options.keep_alive_timeout)),
            origin,
        },
        refresh_interval: options.refresh_interval,
        changes,
        nudge: nudge.clone(),
        shutdown: options.shutdown.clone(),
    };
    let (first_round, first_round_done) = oneshot::channel();
    // Detached on purpose: the task ends by itself when the channel is dropped.
    drop(discovery.spawn(first_round));
    if tokio::time::timeout(options.connect_timeout, first_round_done)
        .await
        .is_err()
    {
        tracing::warn!(%target, "endpoint discovery is slow: calls will wait for it");
    }

    Ok(GrpcChannel {
        channel,
        signer: None,
        policy: Arc::new(CallPolicy {
            request_timeout: options.request_timeout,
            transparent_retries: options.transparent_retries,
            retry_backoff: options.retry_backoff,
            retry_buffer_limit: options.retry_buffer_limit,
            nudge,
            in_process,
        }),
    })
}

/// What every call through one channel shares.
#[derive(Debug)]
struct CallPolicy {
    request_timeout: Duration,
    transparent_retries: u32,
    retry_backoff: Duration,
    retry_buffer_limit: usize,
    nudge: Nudge,
    /// The target's one address, where a server of this process may be offered in process.
    in_process: Option<SocketAddr>,
}

/// A load-balanced gRPC channel: cheap to clone, and what tonic-generated clients take
/// (`FooClient::new(channel)`; it is a `tower::Service<http::Request<tonic::body::Body>>`).
///
/// On every call it:
/// - opens a CLIENT span `package.Service/Method` (see [`crate::telemetry::rpc`]) and injects
///   its W3C trace context into the request headers;
/// - applies a deadline: the caller's (`tonic::Request::set_timeout`) or
///   [`ClientOptions::request_timeout`], sent to the server as `grpc-timeout` (reduced to what
///   is left on a retry) and enforced locally up to the response headers, failing the call with
///   `DeadlineExceeded`;
/// - balances over the discovered endpoints (tower's power-of-two-choices), or, when its target
///   is the one address of a server of the same process offered in process, hands the call to
///   that server without the network (see [`super::in_process`]).
///
/// # Resilience guarantee
///
/// tonic's balancer keeps an endpoint whose backend died until discovery removes it, and
/// reports it ready: every call it routes there fails at once with `Unavailable` ("tcp connect
/// error", connection refused) — a third of the calls with one of three backends dead, as the
/// `plain_tonic_balancer_fails_calls_routed_to_a_dead_endpoint` test shows. A backend draining
/// on shutdown also fails in-flight calls that it never processed (its GOAWAY, or the request
/// still queued on the closing connection).
///
/// So a call that failed in a way proving **no server processed it** — the connection could
/// not be established, hyper handed the request back unsent, or the server's GOAWAY or
/// `REFUSED_STREAM` covered the stream — is sent again, up to
/// [`ClientOptions::transparent_retries`] times with a doubling pause from
/// [`ClientOptions::retry_backoff`], within the call's deadline. Each such failure also has
/// discovery probe the addresses at once and eject those refusing connections, so the next
/// attempts (and calls) go elsewhere even while DNS still lists the dead backend.
///
/// Nothing else is retried: any status a server returned, a stream reset or a connection
/// broken while the server may have been processing the call, an expired deadline all reach
/// the caller as they are, so a non-idempotent call never runs twice. Calls whose request body
/// exceeds [`ClientOptions::retry_buffer_limit`], or is still streaming when the call starts,
/// are sent once (the body cannot be replayed).
///
/// Net effect: while at least one endpoint accepts connections, a dead, draining or
/// not-yet-removed backend costs a little latency (one refused connect, a pause of
/// `retry_backoff`), not failed calls.
#[derive(Clone)]
pub struct GrpcChannel {
    channel: Channel,
    signer: Option<Arc<Signer>>,
    policy: Arc<CallPolicy>,
}

/// Who signs the calls of a channel, for which service.
#[derive(Debug)]
struct Signer {
    identity: MeshIdentity,
    audience: String,
}

impl GrpcChannel {
    /// The same channel, signing every call as mesh member `identity` for service `audience`
    /// (see [`crate::grpc::mesh`]): every call carries a token naming its method, and the
    /// [`Caller`] attached to the request, if any. Without it calls carry no token, which only
    /// health checks accept.
    pub fn signed_by(mut self, identity: &MeshIdentity, audience: &str) -> Self {
        self.signer = Some(Arc::new(Signer {
            identity: identity.clone(),
            audience: audience.to_owned(),
        }));
        self
    }
}

impl fmt::Debug for GrpcChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcChannel")
            .field("request_timeout", &self.policy.request_timeout)
            .field("transparent_retries", &self.policy.transparent_retries)
            .field(
                "signer",
                &self.signer.as_ref().map(|s| (s.identity.name(), &s.audience)),
            )
            .finish_non_exhaustive()
    }
}

impl Service<http::Request<Body>> for GrpcChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is awaited inside the call future, on its own clone of the channel, so that
        // the wait counts against the call's deadline and a retry can wait again.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // Here, not in the future: `call` runs in the caller's span, the parent of the CLIENT
        // span; the server's span becomes a child of the client span.
        let span = rpc::client_span(request.uri().path());
        let timer = RpcTimer::start(RpcSide::Client, request.uri().path());
        span.in_scope(|| propagation::inject_http(request.headers_mut()));
        if let Some(signer) = &self.signer {
            let user = request.extensions().get::<Caller>();
            let token = signer.identity.mint(&signer.audience, request.uri().path(), user);
            match token.map(HeaderValue::try_from) {
                Ok(Ok(value)) => {
                    request.headers_mut().insert(TOKEN_METADATA, value);
                }
                Ok(Err(error)) => {
                    return Box::pin(async move { Err(Status::internal(format!("mesh token: {error}")).into()) });
                }
                Err(error) => {
                    return Box::pin(
                        async move { Err(Status::internal(format!("minting a mesh token: {error}")).into()) },
                    );
                }
            }
        }
        let timeout = caller_timeout(request.headers())
            .unwrap_or(self.policy.request_timeout)
            .min(MAX_DEADLINE);
        let deadline = Instant::now() + timeout;
        let (parts, body) = request.into_parts();
        let body = CapturedBody::capture(body, self.policy.retry_buffer_limit);
        let channel = self.channel.clone();
        let policy = Arc::clone(&self.policy);
        let call = async move {
            match tokio::time::timeout_at(deadline, send(channel, &policy, parts, body, deadline)).await {
                Ok(result) => result,
                Err(_elapsed) => {
                    Err(Status::deadline_exceeded(format!("no response within the {timeout:?} deadline")).into())
                }
            }
        };
        Box::pin(async move {
            let result = call.instrument(span.clone()).await;
            timed_response(traced_response(result, span), timer)
        })
    }
}

/// Records the call's outcome on its client span: the status of a trailers-only response or an
/// error now, a full response's once its trailers arrive (the span stays open until then).
fn traced_response(
    result: Result<http::Response<Body>, BoxError>,
    span: tracing::Span,
) -> Result<http::Response<Body>, BoxError> {
    match result {
        Ok(response) if rpc::record_headers(&span, response.headers()) => Ok(response),
        Ok(response) => Ok(response.map(|body| rpc::TracedBody::wrap(body, span))),
        Err(error) => {
            // Errors that are not a status are transport failures, which tonic reports as
            // UNAVAILABLE.
            match error.downcast_ref::<Status>() {
                Some(status) => rpc::record_code(&span, status.code(), Some(status.message())),
                None => rpc::record_code(&span, tonic::Code::Unavailable, Some(&Chain(&*error).to_string())),
            }
            Err(error)
        }
    }
}

/// Records the call in `rpc.client.duration`: now for an error or a trailers-only response,
/// else when its trailers arrive.
fn timed_response(
    result: Result<http::Response<Body>, BoxError>,
    timer: Option<RpcTimer>,
) -> Result<http::Response<Body>, BoxError> {
    let Some(mut timer) = timer else {
        return result;
    };
    match result {
        Ok(response) => Ok(timer.finish_with(response)),
        Err(error) => {
            timer.finish(match error.downcast_ref::<Status>() {
                Some(status) => status.code(),
                None => tonic::Code::Unavailable,
            });
            Err(error)
        }
    }
}

/// Sends the call, retrying it while it fails before reaching any server.
async fn send(
    mut channel: Channel,
    policy: &CallPolicy,
    parts: http::request::Parts,
    mut body: CapturedBody,
    deadline: Instant,
) -> Result<http::Response<Body>, BoxError> {
    let mut attempt: u32 = 0;
    // The pause doubles per retry; the deadline bounds the whole call anyway.
    let mut backoff = Backoff::new(policy.retry_backoff, policy.retry_backoff.saturating_mul(1 << 16));
    loop {
        let Some(this_body) = body.take() else {
            // Unreachable: only replayable bodies come around again.
            return Err(Status::internal("request body already sent").into());
        };
        let mut request = http::Request::from_parts(clone_parts(&parts), this_body);
        let left = deadline.saturating_duration_since(Instant::now());
        set_grpc_timeout(request.headers_mut(), left);
        let request = match policy.in_process {
            Some(addr) => match in_process::call(addr, request, left).await {
                Ok(response) => return Ok(response),
                Err(for_the_network) => for_the_network,
            },
            None => request,
        };
        let result = match channel.ready().await {
            Ok(ready) => ready.call(request).await,
            Err(error) => Err(error),
        };
        let error: BoxError = match result {
            Ok(response) => return Ok(response),
            Err(error) => error.into(),
        };
        if in_chain::<tonic::TimeoutExpired>(&*error) {
            // tonic's connection also enforces the `grpc-timeout` we set and reports it as
            // `Cancelled`; it is our deadline that expired.
            return Err(Status::deadline_exceeded("deadline exceeded").into());
        }
        if !never_processed(&*error) {
            return Err(error);
        }
        policy.nudge.notify();
        if attempt >= policy.transparent_retries || !body.replayable() {
            tracing::debug!(error = %Chain(&*error), attempt, "gRPC call not processed by any server: giving up");
            return Err(error);
        }
        let pause = backoff.next_pause();
        attempt += 1;
        tracing::debug!(error = %Chain(&*error), attempt, ?pause, "gRPC call not processed by any server: retrying");
        tokio::time::sleep(pause).await;
    }
}

/// True when the call is known not to have been processed by any server, so sending it again
/// cannot run it twice:
/// - the connection to the endpoint could not be established (`tonic::ConnectError`);
/// - hyper gave the request back unsent because the connection closed first (on the HTTP/2
///   client path hyper reports `Canceled` only for requests it never handed to h2);
/// - the server's GOAWAY covered the stream (h2 fails with a remote GOAWAY error only the
///   streams above the GOAWAY's last stream id, which RFC 9113 §6.8 says were not processed,
///   and streams opened after it, which were never sent), or it refused the stream
///   (`REFUSED_STREAM`, RFC 9113 §8.7). A backend draining on shutdown produces these.
fn never_processed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>() {
            return true;
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && hyper.is_canceled()
        {
            return true;
        }
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.is_remote() && (h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM));
        }
        source = error.source();
    }
    false
}

/// True when an `E` is somewhere in `error`'s source chain.
fn in_chain<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<E>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Displays an error with its sources (`transport error: tcp connect error: Connection
/// refused`): tonic's top-level messages alone say little.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = http::Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request.into_parts().0
}

/// The deadline the caller put in the request, if any and well-formed.
fn caller_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let unit_at = value.len().checked_sub(1)?;
    let (amount, unit) = value.split_at(unit_at);
    if amount.is_empty() || amount.len() > 8 {
        return None;
    }
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Writes `timeout` as a `grpc-timeout` header: the most precise unit that fits the 8 digits
/// the protocol allows.
fn set_grpc_timeout(headers: &mut HeaderMap, timeout: Duration) {
    const MAX: u128 = 99_999_999;
    let candidates = [
        (timeout.as_nanos(), 'n'),
        (timeout.as_micros(), 'u'),
        (timeout.as_millis(), 'm'),
        (u128::from(timeout.as_secs()), 'S'),
        (u128::from(timeout.as_secs() / 60), 'M'),
        (u128::from(timeout.as_secs() / 3600), 'H'),
    ];
    let encoded = candidates
        .iter()
        .find(|(amount, _)| *amount <= MAX)
        .map_or_else(|| format!("{MAX}H"), |(amount, unit)| format!("{amount}{unit}"));
    if let Ok(value) = HeaderValue::try_from(encoded) {
        headers.insert(GRPC_TIMEOUT, value);
    }
}

/// A request body read ahead as far as it is already available, so a call that never reached
/// a server can be sent again.
#[derive(Debug)]
enum CapturedBody {
    /// The whole body: can be sent any number of times.
    Complete(Vec<Chunk>),
    /// Part of it is still to come (a client stream) or it is too large: sent once.
    Once(Option<ReplayBody>),
}

#[derive(Debug, Clone)]
enum Chunk {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl CapturedBody {
    fn capture(mut body: Body, limit: usize) -> Self {
        use http_body::Body as _;

        let mut chunks = Vec::new();
        let mut size = 0_usize;
        // Poll only what is ready now: a unary request body is encoded synchronously, while a
        // client stream may wait on the caller, which must not be waited for here. Polling with
        // a no-op waker is fine because whoever polls the body next registers its own waker.
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if size > limit {
                break;
            }
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(None) => return Self::Complete(chunks),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        size = size.saturating_add(data.len());
                        chunks.push(Chunk::Data(data));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            chunks.push(Chunk::Trailers(trailers));
                        }
                    }
                },
                Poll::Ready(Some(Err(status))) => {
                    return Self::Once(Some(ReplayBody {
                        chunks: chunks.into(),
                        rest: None,
                        error: Some(status),
                    }));
                }
                Poll::Pending => break,
            }
        }
        Self::Once(Some(ReplayBody {
            chunks: chunks.into(),
            rest: Some(body),
            error: None,
        }))
    }

    fn replayable(&self) -> bool {
        matches!(self, Self::Complete(_))
    }

    /// The body for the next attempt (`None` once a one-shot body was taken).
    fn take(&mut self) -> Option<Body> {
        match self {
            Self::Complete(chunks) => Some(Body::new(ReplayBody {
                chunks: chunks.iter().cloned().collect(),
                rest: None,
                error: None,
            })),
            Self::Once(body) => body.take().map(Body::new),
        }
    }
}

/// Chunks read ahead, then whatever the original body still has to give.
#[derive(Debug)]
struct ReplayBody {
    chunks: VecDeque<Chunk>,
    rest: Option<Body>,
    error: Option<Status>,
}

impl http_body::Body for ReplayBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(match chunk {
                Chunk::Data(data) => Frame::data(data),
                Chunk::Trailers(trailers) => Frame::trailers(trailers),
            })));
        }
        if let Some(error) = self.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.error.is_none() && self.rest.as_ref().is_none_or(http_body::Body::is_end_stream)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn encodes_and_reads_grpc_timeout() {
        for (timeout, expected) in [
            (Duration::from_millis(50), "50000000n"),
            (Duration::from_secs(5), "5000000u"),
            (Duration::from_millis(200), "200000u"),
            (Duration::from_secs(3600 * 24 * 365), "31536000S"),
            (Duration::from_secs(3600 * 24 * 365 * 1000), "8760000H"),
        ] {
            let mut headers = HeaderMap::new();
            set_grpc_timeout(&mut headers, timeout);
            assert_eq!(headers.get(GRPC_TIMEOUT).unwrap(), expected);
            let read = caller_timeout(&headers).unwrap();
            assert!(read <= timeout && timeout - read < Duration::from_secs(3600));
        }
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("250m"));
        assert_eq!(caller_timeout(&headers), Some(Duration::from_millis(250)));
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("250x"));
        assert_eq!(caller_timeout(&headers), None);
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("123456789S"));
        assert_eq!(caller_timeout(&headers), None);
    }

    #[tokio::test]
    async fn ready_bodies_are_replayable_and_pending_ones_are_not() {
        use http_body::Body as _;

        let chunks = futures::stream::iter(vec![
            Ok::<_, Status>(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::data(Bytes::from_static(b"cd"))),
        ]);
        let body = Body::new(http_body_util_stream(chunks));
        let mut captured = CapturedBody::capture(body, 1024);
        assert!(captured.replayable());
        for _ in 0..2 {
            let mut body = captured.take().unwrap();
            let mut collected = Vec::new();
            while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                collected.extend_from_slice(frame.unwrap().data_ref().unwrap());
            }
            assert_eq!(collected, b"abcd");
        }

        // Over the limit: sent once, in full.
        let body = Body::new(http_body_util_stream(futures::stream::iter(vec![
            Ok::<_, Status>(Frame::data(Bytes::from_static(b"abcdef"))),
            Ok(Frame::data(Bytes::from_static(b"gh"))),
        ])));
        let mut captured = CapturedBody::capture(body, 4);
        assert!(!captured.replayable());
        let mut body = captured.take().unwrap();
        assert!(captured.take().is_none());
        let mut collected = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            collected.extend_from_slice(frame.unwrap().data_ref().unwrap());
        }
        assert_eq!(collected, b"abcdefgh");

        // Still streaming: not replayable, nothing lost.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Status>>(4);
        tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await.unwrap();
        let body = Body::new(http_body_util_stream(tokio_stream::wrappers::ReceiverStream::new(rx)));
        let mut captured = CapturedBody::capture(body, 1024);
        assert!(!captured.replayable());
        tx.send(Ok(Frame::data(Bytes::from_static(b"y")))).await.unwrap();
        drop(tx);
        let mut body = captured.take().unwrap();
        let mut collected = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            collected.extend_from_slice(frame.unwrap().data_ref().unwrap());
        }
        assert_eq!(collected, b"xy");
    }

    /// A body from a stream of frames (what `http_body_util::StreamBody` does).
    fn http_body_util_stream<S>(stream: S) -> StreamBody<S>
    where
        S: futures::Stream<Item = Result<Frame<Bytes>, Status>> + Unpin + Send + 'static,
    {
        StreamBody(stream)
    }

    struct StreamBody<S>(S);

    impl<S> http_body::Body for StreamBody<S>
    where
        S: futures::Stream<Item = Result<Frame<Bytes>, Status>> + Unpin,
    {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            futures::Stream::poll_next(Pin::new(&mut self.0), cx)
        }
    }

    #[test]
    fn only_unprocessed_failures_are_retried() {
        let connect: BoxError = Box::new(tonic::ConnectError("refused".into()));
        assert!(never_processed(&*connect));
        let status: BoxError = Box::new(Status::unavailable("server said so"));
        assert!(!never_processed(&*status));
        let refused: BoxError = Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM));
        // Built locally, not received from a server: not a promise the server made.
        assert!(!never_processed(&*refused));
        assert!(in_chain::<Status>(&*status));
    }
}
