//! Where a gRPC client sends its calls: `dns://host:port` (every address behind a name, as a
//! Kubernetes headless Service answers), `static://a:1,b:2`, or one `http://host:port` /
//! `host:port`, parsed with clear errors.

use std::{fmt, str::FromStr};

use http::{Uri, uri::Authority};

/// Where a client sends its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A DNS name resolved to one endpoint per A/AAAA record and re-resolved every
    /// [`ClientOptions::refresh_interval`] (a Kubernetes headless Service answers one record per
    /// ready pod). Written `dns://host:port` or `dns:///host:port`.
    Dns {
        /// Name to resolve; end it with `.` to skip the resolv.conf search list.
        host: String,
        /// Port every endpoint listens on.
        port: u16,
    },
    /// A fixed list of `http://host:port` endpoints, never re-resolved: `static://a:1,b:2`,
    /// `http://host:port` or `host:port`.
    Static(Vec<Uri>),
}

/// Why a target string is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Nothing but whitespace.
    #[error("empty gRPC target")]
    Empty,
    /// A scheme other than `dns`, `static` or `http`.
    #[error(
        "gRPC target `{target}`: unsupported scheme `{scheme}` (expected dns://host:port, \
         static://host:port,..., http://host:port or host:port)"
    )]
    UnsupportedScheme {
        /// The whole target.
        target: String,
        /// The scheme found.
        scheme: String,
    },
    /// `dns://server/name`: choosing the DNS server in the target is not supported.
    #[error(
        "gRPC target `{target}`: a DNS server in the target is not supported, set \
         ClientOptions::nameserver instead"
    )]
    DnsAuthority {
        /// The whole target.
        target: String,
    },
    /// `static://` with no address.
    #[error("gRPC target `{target}`: empty address list")]
    EmptyList {
        /// The whole target.
        target: String,
    },
    /// An address without a host.
    #[error("gRPC target `{target}`: missing host in `{address}`")]
    MissingHost {
        /// The whole target.
        target: String,
        /// The faulty address.
        address: String,
    },
    /// An address without a port (there is no default gRPC port).
    #[error("gRPC target `{target}`: missing port in `{address}`")]
    MissingPort {
        /// The whole target.
        target: String,
        /// The faulty address.
        address: String,
    },
    /// A port that is not a number in 1..=65535.
    #[error("gRPC target `{target}`: invalid port in `{address}`")]
    InvalidPort {
        /// The whole target.
        target: String,
        /// The faulty address.
        address: String,
    },
    /// A host that is not a valid DNS name or IP address, or a path after the port.
    #[error("gRPC target `{target}`: invalid address `{address}`")]
    InvalidAddress {
        /// The whole target.
        target: String,
        /// The faulty address.
        address: String,
    },
}

impl Target {
    /// Parses `dns://host:port`, `dns:///host:port`, `static://a:1,b:2`, `http://host:port` or
    /// `host:port` (the last two being one static address).
    pub fn parse(target: &str) -> Result<Self, TargetError> {
        let target = target.trim();
        if target.is_empty() {
            return Err(TargetError::Empty);
        }
        let Some((scheme, rest)) = target.split_once("://") else {
            if let Some((scheme, _)) = target.split_once(':')
                && scheme.eq_ignore_ascii_case("dns")
            {
                // `dns:host:port`, a form gRPC accepts but we keep to the `//` spellings.
                return Err(TargetError::InvalidAddress {
                    target: target.to_owned(),
                    address: target.to_owned(),
                });
            }
            return Ok(Self::Static(vec![static_uri(target, target)?]));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "dns" => {
                let name = match rest.strip_prefix('/') {
                    Some(name) => name,
                    None if rest.contains('/') => {
                        return Err(TargetError::DnsAuthority {
                            target: target.to_owned(),
                        });
                    }
                    None => rest,
                };
                let (host, port) = split_host_port(target, name)?;
                if host.parse::<std::net::IpAddr>().is_err() && !is_dns_name(host) {
                    return Err(TargetError::InvalidAddress {
                        target: target.to_owned(),
                        address: name.to_owned(),
                    });
                }
                Ok(Self::Dns {
                    host: host.to_owned(),
                    port,
                })
            }
            "static" => {
                let uris = rest
                    .split(',')
                    .map(str::trim)
                    .filter(|address| !address.is_empty())
                    .map(|address| {
                        let address = address.strip_prefix("http://").unwrap_or(address);
                        static_uri(target, address)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if uris.is_empty() {
                    return Err(TargetError::EmptyList {
                        target: target.to_owned(),
                    });
                }
                Ok(Self::Static(uris))
            }
            "http" => Ok(Self::Static(vec![static_uri(target, rest)?])),
            _ => Err(TargetError::UnsupportedScheme {
                target: target.to_owned(),
                scheme: scheme.to_owned(),
            }),
        }
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(target: &str) -> Result<Self, Self::Err> {
        Self::parse(target)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns { host, port } if host.contains(':') => write!(f, "dns:///[{host}]:{port}"),
            Self::Dns { host, port } => write!(f, "dns:///{host}:{port}"),
            Self::Static(uris) => {
                f.write_str("static://")?;
                for (index, uri) in uris.iter().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    match uri.authority() {
                        Some(authority) => f.write_str(authority.as_str())?,
                        None => write!(f, "{uri}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6), checking both parts are present.
fn split_host_port<'a>(target: &str, address: &'a str) -> Result<(&'a str, u16), TargetError> {
    let error = |make: fn(String, String) -> TargetError| make(target.to_owned(), address.to_owned());
    let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| error(|target, address| TargetError::InvalidAddress { target, address }))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| error(|target, address| TargetError::MissingPort { target, address }))?;
        (host, port)
    } else {
        match address.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                // An IPv6 literal without brackets: the port cannot be told apart.
                return Err(error(|target, address| TargetError::InvalidAddress { target, address }));
            }
            Some((host, port)) => (host, port),
            None => {
                return Err(error(|target, address| TargetError::MissingPort { target, address }));
            }
        }
    };
    if host.is_empty() {
        return Err(error(|target, address| TargetError::MissingHost { target, address }));
    }
    if port.is_empty() {
        return Err(error(|target, address| TargetError::MissingPort { target, address }));
    }
    match port.parse::<u16>() {
        Ok(port) if port != 0 => Ok((host, port)),
        _ => Err(error(|target, address| TargetError::InvalidPort { target, address })),
    }
}

/// A syntactically valid DNS name (letters, digits, `-`, `_`, dot-separated, optional final dot).
fn is_dns_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `http://host:port` for one static address.
fn static_uri(target: &str, address: &str) -> Result<Uri, TargetError> {
    let address = address.strip_suffix('/').unwrap_or(address);
    let (host, port) = split_host_port(target, address)?;
    let invalid = || TargetError::InvalidAddress {
        target: target.to_owned(),
        address: address.to_owned(),
    };
    if host.parse::<std::net::IpAddr>().is_err() && !is_dns_name(host) {
        return Err(invalid());
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let authority = Authority::try_from(authority).map_err(|_| invalid())?;
    Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query("/")
        .build()
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn parses_dns_targets() {
        let expected = Target::Dns {
            host: "catalog.shop.svc.cluster.local".to_owned(),
            port: 50051,
        };
        assert_eq!(
            Target::parse("dns://catalog.shop.svc.cluster.local:50051").unwrap(),
            expected
        );
        assert_eq!(
            Target::parse(" dns:///catalog.shop.svc.cluster.local:50051 ").unwrap(),
            expected
        );
        assert_eq!(
            Target::parse("DNS:///catalog.shop.svc.cluster.local.:1").unwrap(),
            Target::Dns {
                host: "catalog.shop.svc.cluster.local.".to_owned(),
                port: 1
            }
        );
        assert_eq!(
            "dns:///catalog:50051".parse::<Target>().unwrap().to_string(),
            "dns:///catalog:50051"
        );
    }

    #[test]
    fn parses_static_targets() {
        assert_eq!(
            Target::parse("static://10.0.0.1:50051, 10.0.0.2:50052,").unwrap(),
            Target::Static(vec![uri("http://10.0.0.1:50051/"), uri("http://10.0.0.2:50052/")])
        );
        assert_eq!(
            Target::parse("http://catalog:50051").unwrap(),
            Target::Static(vec![uri("http://catalog:50051/")])
        );
        assert_eq!(
            Target::parse("http://catalog:50051/").unwrap(),
            Target::Static(vec![uri("http://catalog:50051/")])
        );
        assert_eq!(
            Target::parse("127.0.0.1:50051").unwrap(),
            Target::Static(vec![uri("http://127.0.0.1:50051/")])
        );
        assert_eq!(
            Target::parse("[::1]:50051").unwrap(),
            Target::Static(vec![uri("http://[::1]:50051/")])
        );
        assert_eq!(
            Target::parse("static://a:1,[::1]:2").unwrap().to_string(),
            "static://a:1,[::1]:2"
        );
    }

    #[test]
    fn rejects_bad_targets() {
        use TargetError as E;
        type Check = fn(&TargetError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, E::Empty)),
            ("   ", |e| matches!(e, E::Empty)),
            (
                "https://catalog:443",
                |e| matches!(e, E::UnsupportedScheme { scheme, .. } if scheme == "https"),
            ),
            ("consul://catalog", |e| matches!(e, E::UnsupportedScheme { .. })),
            ("dns://catalog", |e| matches!(e, E::MissingPort { .. })),
            ("dns://catalog:", |e| matches!(e, E::MissingPort { .. })),
            ("dns://:50051", |e| matches!(e, E::MissingHost { .. })),
            ("dns://catalog:http", |e| matches!(e, E::InvalidPort { .. })),
            ("dns://catalog:70000", |e| matches!(e, E::InvalidPort { .. })),
            ("dns://catalog:0", |e| matches!(e, E::InvalidPort { .. })),
            ("dns://8.8.8.8/catalog:50051", |e| matches!(e, E::DnsAuthority { .. })),
            ("dns://cat alog:1", |e| matches!(e, E::InvalidAddress { .. })),
            ("dns:catalog:1", |e| matches!(e, E::InvalidAddress { .. })),
            ("static://", |e| matches!(e, E::EmptyList { .. })),
            ("static://,,", |e| matches!(e, E::EmptyList { .. })),
            ("static://a:1,b", |e| matches!(e, E::MissingPort { .. })),
            ("catalog", |e| matches!(e, E::MissingPort { .. })),
            ("::1:50051", |e| matches!(e, E::InvalidAddress { .. })),
            ("[::1:50051", |e| matches!(e, E::InvalidAddress { .. })),
            ("http://catalog:1/path", |e| matches!(e, E::InvalidPort { .. })),
            ("http://-bad-:1", |e| matches!(e, E::InvalidAddress { .. })),
        ];
        for (input, check) in cases {
            let error = Target::parse(input).expect_err(input);
            assert!(check(&error), "{input:?} gave {error:?}");
            // Every error names the problem in words.
            assert!(!error.to_string().is_empty());
        }
    }
}
