//! Where spans and metrics go: OTLP over gRPC or HTTP/protobuf, configured by the standard
//! OpenTelemetry exporter variables, each signal-specific one (`OTEL_EXPORTER_OTLP_TRACES_*`,
//! `OTEL_EXPORTER_OTLP_METRICS_*`) winning over its general form (`OTEL_EXPORTER_OTLP_*`):
//!
//! - `…_ENDPOINT`: the collector. With the general variable and HTTP, `/v1/traces` or
//!   `/v1/metrics` is appended; a signal-specific one is used as given. `https://` uses TLS
//!   (rustls, the webpki roots).
//! - `…_PROTOCOL`: `grpc` (the default) or `http/protobuf`.
//! - `…_HEADERS`: `key=value,…` (values URL-encoded), sent with every export (e.g. a token).
//! - `…_CERTIFICATE`: a PEM file of CA certificates trusted besides the webpki roots (a private
//!   CA, a self-signed collector); `…_CLIENT_CERTIFICATE` and `…_CLIENT_KEY`: PEM files of a
//!   client certificate and its key, for collectors that require mutual TLS.
//! - `…_TIMEOUT`: milliseconds one export may take (10 000 by default).
//! - `OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`: `otlp` (the default) or `none`;
//!   `OTEL_SDK_DISABLED=true` also turns export off. (Metrics are served at `/metrics`
//!   whatever these say.)
//!
//! Values are checked at start (a bad one stops the process with exit code 64, like every
//! setting); what only the collector can tell (unreachable, untrusted certificate) is logged by
//! the exporter while the service keeps serving.

use std::{collections::HashMap, path::Path, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};

use crate::config::{ConfigError, Env};

/// What an exporter sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metrics.
    Metrics,
}

impl Signal {
    /// Its part of the variable names (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    fn key(self) -> &'static str {
        match self {
            Self::Traces => "TRACES",
            Self::Metrics => "METRICS",
        }
    }

    /// Its path under an HTTP collector's base URL.
    fn path(self) -> &'static str {
        match self {
            Self::Traces => "/v1/traces",
            Self::Metrics => "/v1/metrics",
        }
    }
}

/// How telemetry is sent to the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (`grpc`).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`).
    HttpProtobuf,
}

/// Where and how one signal is exported over OTLP.
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpExport {
    /// What is exported.
    pub signal: Signal,
    /// The transport.
    pub protocol: Protocol,
    /// The collector's URL: its origin for gRPC, the signal's URL (`…/v1/traces`) for HTTP.
    pub endpoint: String,
    /// Headers (gRPC metadata) sent with every export.
    pub headers: Vec<(String, String)>,
    /// PEM CA certificates trusted besides the webpki roots.
    pub ca_certificate: Option<Vec<u8>>,
    /// PEM client certificate and key, for mutual TLS.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Longest time one export may take.
    pub timeout: Duration,
}

// Headers may carry credentials: only their names are shown.
impl std::fmt::Debug for OtlpExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExport")
            .field("signal", &self.signal)
            .field("protocol", &self.protocol)
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self.headers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("ca_certificate", &self.ca_certificate.is_some())
            .field("client_identity", &self.client_identity.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The signal-specific variable `OTEL_EXPORTER_OTLP_<signal>_<name>` if set, else the general
/// `OTEL_EXPORTER_OTLP_<name>`: `(variable, value)`.
fn setting(env: &impl Env, signal: Signal, name: &str) -> Option<(String, String)> {
    [
        format!("OTEL_EXPORTER_OTLP_{}_{name}", signal.key()),
        format!("OTEL_EXPORTER_OTLP_{name}"),
    ]
    .into_iter()
    .find_map(|key| env.var(&key).map(|value| (key, value.trim().to_owned())))
}

impl OtlpExport {
    /// The export settings of `signal` from `env`; `None` when no endpoint is set or export is
    /// turned off.
    pub fn from_env(env: &impl Env, signal: Signal) -> Result<Option<Self>, ConfigError> {
        if env.parse_or("OTEL_SDK_DISABLED", false)? {
            return Ok(None);
        }
        let exporter_key = format!("OTEL_{}_EXPORTER", signal.key());
        match env.var(&exporter_key).as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(ConfigError::new(
                    &exporter_key,
                    format!("{other:?} is not supported: use otlp or none"),
                ));
            }
        }
        let protocol = match setting(env, signal, "PROTOCOL") {
            None => Protocol::Grpc,
            Some((_, value)) if value == "grpc" => Protocol::Grpc,
            Some((_, value)) if value == "http/protobuf" => Protocol::HttpProtobuf,
            Some((key, value)) => {
                return Err(ConfigError::new(
                    &key,
                    format!("{value:?} is not supported: use grpc or http/protobuf"),
                ));
            }
        };
        let specific = format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.key());
        let endpoint = if env.var(&specific).is_some() {
            env.url_or(&specific, "", &["http", "https"])?
        } else if env.var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
            let base = env.url_or("OTEL_EXPORTER_OTLP_ENDPOINT", "", &["http", "https"])?;
            match protocol {
                Protocol::Grpc => base,
                Protocol::HttpProtobuf => format!("{}{}", base.trim_end_matches('/'), signal.path()),
            }
        } else {
            return Ok(None);
        };
        let headers = match setting(env, signal, "HEADERS") {
            None => Vec::new(),
            Some((key, value)) => parse_headers(&value).map_err(|reason| ConfigError::new(&key, reason))?,
        };
        let ca_certificate = setting(env, signal, "CERTIFICATE")
            .map(|(key, path)| read_pem(&key, &path))
            .transpose()?;
        let client_identity = match (
            setting(env, signal, "CLIENT_CERTIFICATE"),
            setting(env, signal, "CLIENT_KEY"),
        ) {
            (None, None) => None,
            (Some((cert_key, cert)), Some((key_key, key))) => {
                Some((read_pem(&cert_key, &cert)?, read_pem(&key_key, &key)?))
            }
            (Some((key, _)), None) | (None, Some((key, _))) => {
                return Err(ConfigError::new(
                    &key,
                    "a client certificate needs its key and the key its certificate (CLIENT_CERTIFICATE and CLIENT_KEY)",
                ));
            }
        };
        let timeout = match setting(env, signal, "TIMEOUT") {
            None => Duration::from_secs(10),
            Some((key, value)) => value
                .parse::<u64>()
                .ok()
                .filter(|millis| *millis > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| ConfigError::new(&key, format!("{value:?} is not a positive number of milliseconds")))?,
        };
        Ok(Some(Self {
            signal,
            protocol,
            endpoint,
            headers,
            ca_certificate,
            client_identity,
            timeout,
        }))
    }

    /// The OTLP span exporter these settings describe.
    pub fn exporter(&self) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
        let builder = opentelemetry_otlp::SpanExporter::builder();
        Ok(match self.protocol {
            Protocol::Grpc => self.tonic(builder.with_tonic())?.build()?,
            Protocol::HttpProtobuf => self.http(builder.with_http())?.build()?,
        })
    }

    /// The OTLP metric exporter these settings describe.
    pub fn metric_exporter(&self) -> anyhow::Result<opentelemetry_otlp::MetricExporter> {
        let builder = opentelemetry_otlp::MetricExporter::builder();
        Ok(match self.protocol {
            Protocol::Grpc => self.tonic(builder.with_tonic())?.build()?,
            Protocol::HttpProtobuf => self.http(builder.with_http())?.build()?,
        })
    }

    /// `builder` (of spans or metrics) set up for OTLP/gRPC.
    fn tonic<B: WithExportConfig + WithTonicConfig>(&self, builder: B) -> anyhow::Result<B> {
        let mut metadata = tonic::metadata::MetadataMap::new();
        for (name, value) in &self.headers {
            metadata.insert(
                tonic::metadata::MetadataKey::from_bytes(name.as_bytes())?,
                tonic::metadata::MetadataValue::try_from(value.as_str())?,
            );
        }
        let mut builder = builder
            .with_protocol(opentelemetry_otlp::Protocol::Grpc)
            .with_endpoint(&self.endpoint)
            .with_timeout(self.timeout)
            .with_metadata(metadata);
        if self.endpoint.starts_with("https://") {
            builder = builder.with_tls_config(self.tonic_tls());
        }
        Ok(builder)
    }

    /// `builder` (of spans or metrics) set up for OTLP over HTTP/protobuf.
    fn http<B: WithExportConfig + WithHttpConfig>(&self, builder: B) -> anyhow::Result<B> {
        Ok(builder
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(&self.endpoint)
            .with_timeout(self.timeout)
            .with_headers(self.headers.iter().cloned().collect::<HashMap<_, _>>())
            .with_http_client(ReqwestClient {
                client: self.reqwest_client()?,
                runtime: tokio::runtime::Handle::try_current().ok(),
            }))
    }

    fn tonic_tls(&self) -> tonic::transport::ClientTlsConfig {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
        if let Some(pem) = &self.ca_certificate {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        if let Some((cert, key)) = &self.client_identity {
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        tls
    }

    fn reqwest_client(&self) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder().timeout(self.timeout);
        if let Some(pem) = &self.ca_certificate {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some((cert, key)) = &self.client_identity {
            let mut pem = key.clone();
            pem.push(b'\n');
            pem.extend_from_slice(cert);
            builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
        }
        Ok(builder.build()?)
    }
}

/// Reads the PEM file `path` named by the variable `key`.
fn read_pem(key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    let pem = std::fs::read(Path::new(path))
        .map_err(|error| ConfigError::new(key, format!("cannot read {path:?}: {error}")))?;
    if !pem.windows(10).any(|window| window == b"-----BEGIN") {
        return Err(ConfigError::new(key, format!("{path:?} holds no PEM block")));
    }
    Ok(pem)
}

/// `key=value,key2=value2` with URL-encoded values, as the OTLP exporter specification writes
/// headers.
fn parse_headers(raw: &str) -> Result<Vec<(String, String)>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            let name = name.trim().to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("{name:?} is not a header name"));
            }
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .map_err(|_| format!("the value of {name:?} is not URL-encoded UTF-8"))?
                .into_owned();
            if http::HeaderValue::from_str(&value).is_err() {
                return Err(format!("the value of {name:?} cannot be a header value"));
            }
            Ok((name, value))
        })
        .collect()
}

/// The HTTP client of the HTTP/protobuf exporter: the workspace's reqwest (rustls, the webpki
/// roots plus the configured CA), which the exporter crate has no adapter for.
///
/// The SDK's batch processor exports from a thread of its own, outside the Tokio runtime, and
/// reqwest (hyper) needs the runtime's reactor: run there directly, every export would panic
/// that thread and no span would ever leave. So each request runs as a task on the runtime the
/// exporter was built in (the process's), and the export waits for it, as the gRPC exporter
/// does through tonic's channel.
#[derive(Debug)]
struct ReqwestClient {
    client: reqwest::Client,
    runtime: Option<tokio::runtime::Handle>,
}

#[async_trait]
impl opentelemetry_http::HttpClient for ReqwestClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let call = async move {
            let response = client.execute(request).await?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                headers.extend(
                    response
                        .headers()
                        .iter()
                        .map(|(name, value)| (name.clone(), value.clone())),
                );
            }
            Ok::<_, opentelemetry_http::HttpError>(answer.body(response.bytes().await?)?)
        };
        match &self.runtime {
            Some(runtime) => runtime.spawn(call).await?,
            None => call.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    fn traces(pairs: &[(&str, &str)]) -> Result<Option<OtlpExport>, ConfigError> {
        OtlpExport::from_env(&MapEnv::from_pairs(pairs.iter().copied()), Signal::Traces)
    }

    #[test]
    fn no_endpoint_no_export() {
        assert_eq!(traces(&[]).ok(), Some(None));
        let off = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]);
        assert_eq!(off.ok(), Some(None));
        let off = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(off.ok(), Some(None));
    }

    #[test]
    fn grpc_by_default_and_http_gets_the_traces_path() {
        let grpc = traces(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317")])
            .ok()
            .flatten();
        assert_eq!(
            grpc.map(|t| (t.protocol, t.endpoint, t.timeout)),
            Some((
                Protocol::Grpc,
                "https://collector:4317".to_owned(),
                Duration::from_secs(10)
            ))
        );
        let http = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .ok()
        .flatten();
        assert_eq!(
            http.map(|t| (t.protocol, t.endpoint)),
            Some((Protocol::HttpProtobuf, "http://collector:4318/v1/traces".to_owned()))
        );
    }

    #[test]
    fn trace_specific_variables_win_and_are_used_as_given() {
        let t = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/custom"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-general=1"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "Authorization=Bearer%20abc, x-tenant = shop",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
        ])
        .ok()
        .flatten();
        assert_eq!(
            t.map(|t| (t.protocol, t.endpoint, t.headers, t.timeout)),
            Some((
                Protocol::HttpProtobuf,
                "http://traces:4318/custom".to_owned(),
                vec![
                    ("authorization".to_owned(), "Bearer abc".to_owned()),
                    ("x-tenant".to_owned(), "shop".to_owned())
                ],
                Duration::from_millis(2500)
            ))
        );
    }

    #[test]
    fn metrics_follow_the_same_settings_with_their_own_path_and_variables() {
        let metrics = |pairs: &[(&str, &str)]| {
            OtlpExport::from_env(&MapEnv::from_pairs(pairs.iter().copied()), Signal::Metrics)
                .ok()
                .flatten()
                .map(|m| (m.protocol, m.endpoint, m.headers))
        };
        let general = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=shop"),
        ];
        assert_eq!(
            metrics(&general),
            Some((
                Protocol::HttpProtobuf,
                "https://collector:4318/v1/metrics".to_owned(),
                vec![("x-tenant".to_owned(), "shop".to_owned())]
            ))
        );
        let mut specific = general.to_vec();
        specific.extend([
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:4317"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-traces-only=1"),
        ]);
        assert_eq!(
            metrics(&specific),
            Some((
                Protocol::Grpc,
                "http://metrics:4317".to_owned(),
                vec![("x-tenant".to_owned(), "shop".to_owned())]
            ))
        );
        let mut off = general.to_vec();
        off.push(("OTEL_METRICS_EXPORTER", "none"));
        assert_eq!(metrics(&off), None);
        assert!(traces(&off).ok().flatten().is_some(), "traces still exported");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");
        for (pair, key) in [
            (
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"),
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            ),
            (
                ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign"),
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                ("OTEL_EXPORTER_OTLP_HEADERS", "bad name=1"),
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"), "OTEL_EXPORTER_OTLP_TIMEOUT"),
            (
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
            ),
            (
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/nonexistent/key.pem"),
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            ),
            (("OTEL_TRACES_EXPORTER", "jaeger"), "OTEL_TRACES_EXPORTER"),
            (
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://c"),
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
        ] {
            let error = traces(&[endpoint, pair]).err().map(|error| error.key);
            assert_eq!(error.as_deref(), Some(key), "{pair:?}");
        }
    }

    #[test]
    fn a_file_without_pem_is_refused() {
        let file = tempfile::NamedTempFile::new().ok();
        let path = file
            .as_ref()
            .map(|f| f.path().display().to_string())
            .unwrap_or_default();
        let error = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4317"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &path),
        ])
        .err();
        assert!(error.is_some_and(|e| e.reason.contains("no PEM")));
    }
}
