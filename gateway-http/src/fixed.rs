//! Responses whose bytes never change while they are served (the OpenAPI document, the API
//! reference page and its assets for the life of the process; an entry of the edge read cache
//! for its own): built once, gzip-compressed once, and answered with a strong `ETag`,
//! `Cache-Control` and `304 Not Modified` to a matching `If-None-Match`.
//!
//! The gzip variant is made here rather than by the compression layer so that each encoding
//! has its own strong validator (RFC 9110 §8.8.1: a strong ETag names one representation);
//! the compression layer leaves a response that already has a `Content-Encoding` alone.

use std::io::Write as _;

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use flate2::{Compression, write::GzEncoder};
use sha2::{Digest as _, Sha256};

/// How long clients and caches may keep a fixed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Revalidate on every use (a cheap 304 while unchanged): for what changes with a release
    /// under the same URL, like the OpenAPI document and the page.
    Revalidate,
    /// Reuse for an hour without asking: for the vendored assets, which change only when the
    /// pinned version does.
    Hour,
    /// Reuse for this long without asking, by anyone (a shared cache too): for the public
    /// catalog reads of the edge read cache. Under a second: revalidate on every use.
    For(std::time::Duration),
    /// Not to be stored anywhere: an answer only this caller may see.
    Private,
}

impl Freshness {
    fn header(self) -> HeaderValue {
        match self {
            Self::Revalidate => HeaderValue::from_static("public, no-cache"),
            Self::Hour => HeaderValue::from_static("public, max-age=3600"),
            Self::For(ttl) if ttl.as_secs() == 0 => Self::Revalidate.header(),
            Self::For(ttl) => HeaderValue::try_from(format!("public, max-age={}", ttl.as_secs()))
                .unwrap_or_else(|_| Self::Revalidate.header()),
            Self::Private => HeaderValue::from_static("private, no-store"),
        }
    }
}

/// One encoding of a fixed response.
#[derive(Debug)]
struct Variant {
    bytes: axum::body::Bytes,
    etag: HeaderValue,
}

/// A response built once and answered many times.
#[derive(Debug)]
pub struct Fixed {
    content_type: HeaderValue,
    cache_control: HeaderValue,
    identity: Variant,
    /// Absent when gzip would not make the body smaller (an image, a tiny file).
    gzip: Option<Variant>,
    extra_headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Fixed {
    /// `bytes` served as `content_type`, cached as `freshness` says.
    pub fn new(bytes: impl Into<axum::body::Bytes>, content_type: &'static str, freshness: Freshness) -> Self {
        let bytes: axum::body::Bytes = bytes.into();
        let tag = content_tag(&bytes);
        let gzip = gzip(&bytes)
            .filter(|compressed| compressed.len() < bytes.len())
            .map(|compressed| Variant {
                bytes: compressed.into(),
                etag: etag(&format!("{tag}-gzip")),
            });
        Self {
            content_type: HeaderValue::from_static(content_type),
            cache_control: freshness.header(),
            identity: Variant {
                bytes,
                etag: etag(&tag),
            },
            gzip,
            extra_headers: Vec::new(),
        }
    }

    /// Adds a header sent with every answer (e.g. a content security policy).
    pub fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.extra_headers.push((name, HeaderValue::from_static(value)));
        self
    }

    /// The answer to a GET or HEAD with `request` headers: the body in the best encoding the
    /// client accepts, or 304 when it already holds that representation.
    pub fn respond(&self, request: &HeaderMap) -> Response {
        let (variant, gzipped) = match &self.gzip {
            Some(gzip) if accepts_gzip(request) => (gzip, true),
            _ => (&self.identity, false),
        };
        let not_modified = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .any(|value| none_match_hits(value, &variant.etag));
        let mut response = if not_modified {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut response = Response::new(Body::from(variant.bytes.clone()));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, self.content_type.clone());
            if gzipped {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, variant.etag.clone());
        headers.insert(header::CACHE_CONTROL, self.cache_control.clone());
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if self.gzip.is_some() {
            headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        for (name, value) in &self.extra_headers {
            headers.insert(name.clone(), value.clone());
        }
        response
    }
}

/// The first 128 bits of the body's SHA-256, in hex: unique enough to name a version.
fn content_tag(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn etag(tag: &str) -> HeaderValue {
    // Hex digits and '-' only: always a valid header value.
    HeaderValue::from_str(&format!("\"{tag}\"")).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 3), Compression::default());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}

/// Whether one `If-None-Match` header value names `etag` (weak comparison, as RFC 9110
/// §13.1.2 asks for this header, so `W/"x"` matches `"x"`), or is `*`.
fn none_match_hits(value: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let ours = etag.to_str().unwrap_or_default();
    value
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == ours)
}

/// Whether `Accept-Encoding` allows gzip: named (or `x-gzip`, or `*`) with a non-zero weight.
fn accepts_gzip(request: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in request.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for entry in value.split(',') {
            let mut parts = entry.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default().to_ascii_lowercase();
            let weight = parts
                .find_map(|parameter| parameter.strip_prefix("q=").or_else(|| parameter.strip_prefix("Q=")))
                .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(weight > 0.0),
                "*" => any = Some(weight > 0.0),
                _ => {}
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Read as _;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_static(value)))
            .collect()
    }

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    #[test]
    fn gzip_is_accepted_only_with_a_positive_weight() {
        let accepts = |value| accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, value)]));
        assert!(accepts("gzip"));
        assert!(accepts("br, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(accepts("x-gzip"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("gzip; q=0.000, *"));
        assert!(!accepts("br, identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_compares_weakly_and_understands_lists_and_star() {
        let ours = HeaderValue::from_static("\"abc\"");
        let hits = |value| none_match_hits(&HeaderValue::from_static(value), &ours);
        assert!(hits("\"abc\""));
        assert!(hits("W/\"abc\""));
        assert!(hits("\"x\", \"abc\""));
        assert!(hits("*"));
        assert!(!hits("\"abd\""));
        assert!(!hits("abc"));
    }

    #[tokio::test]
    async fn each_encoding_has_its_own_strong_etag_and_revalidates_to_304() {
        let text = "the same line, again and again\n".repeat(200);
        let fixed = Fixed::new(text.clone(), "text/plain", Freshness::Revalidate);

        let plain = fixed.respond(&HeaderMap::new());
        assert_eq!(plain.status(), StatusCode::OK);
        let plain_tag = plain.headers()[header::ETAG].clone();
        assert!(!plain_tag.to_str().unwrap().starts_with("W/"), "a strong validator");
        assert_eq!(plain.headers()[header::CACHE_CONTROL], "public, no-cache");
        assert_eq!(plain.headers()[header::VARY], "accept-encoding");
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(body(plain).await, text.as_bytes());

        let zipped = fixed.respond(&headers(&[(header::ACCEPT_ENCODING, "gzip, br")]));
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        let zipped_tag = zipped.headers()[header::ETAG].clone();
        assert_ne!(zipped_tag, plain_tag);
        let compressed = body(zipped).await;
        assert!(compressed.len() < text.len() / 10);
        let mut inflated = String::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_string(&mut inflated)
            .unwrap();
        assert_eq!(inflated, text);

        let mut conditional = HeaderMap::new();
        conditional.insert(header::IF_NONE_MATCH, plain_tag.clone());
        let not_modified = fixed.respond(&conditional);
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(not_modified.headers()[header::ETAG], plain_tag);
        assert!(body(not_modified).await.is_empty());

        // The identity tag does not validate the gzip representation.
        conditional.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(fixed.respond(&conditional).status(), StatusCode::OK);
    }

    #[test]
    fn a_body_gzip_cannot_shrink_is_only_served_as_is() {
        let fixed = Fixed::new(vec![7u8; 3], "image/png", Freshness::Hour);
        let response = fixed.respond(&headers(&[(header::ACCEPT_ENCODING, "gzip")]));
        assert!(response.headers().get(header::CONTENT_ENCODING).is_none());
        assert!(response.headers().get(header::VARY).is_none());
        assert_eq!(response.headers()[header::CACHE_CONTROL], "public, max-age=3600");
    }
}
