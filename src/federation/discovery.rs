//! An issuer's metadata: RFC 8414 (`/.well-known/oauth-authorization-server` inserted before
//! the issuer's path), then OpenID Connect Discovery 1.0 (`{issuer}/.well-known/openid-configuration`).
//! The document's `issuer` must equal the configured one exactly (RFC 8414 §3.3, OIDC
//! Discovery §4.3), which stops a provider from speaking for another.

use super::client::{Outbound, OutboundError};

/// The endpoints gatehouse uses, plus the whole document for anything else.
#[derive(Clone, Debug)]
pub struct Metadata {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub introspection_endpoint: Option<String>,
    pub end_session_endpoint: Option<String>,
    /// Every member of the document as received.
    pub raw: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("{issuer}: not an https URL with a host")]
    BadIssuer { issuer: String },
    #[error("{url}: metadata names issuer {found:?}, expected exactly {expected:?}")]
    IssuerMismatch {
        url: String,
        expected: String,
        found: String,
    },
    #[error("{url}: {member} is not an https URL")]
    BadEndpoint { url: String, member: &'static str },
    #[error("no metadata ({rfc8414}; {openid})")]
    Unreachable { rfc8414: String, openid: String },
}

/// The two metadata URLs of `issuer`, in the order they are tried.
pub fn metadata_urls(issuer: &str) -> Result<[String; 2], DiscoveryError> {
    let bad = || DiscoveryError::BadIssuer {
        issuer: issuer.to_string(),
    };
    let parsed = url::Url::parse(issuer).map_err(|_| bad())?;
    if parsed.scheme() != "https"
        || parsed.host_str().is_none()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err(bad());
    }
    let origin = parsed.origin().ascii_serialization();
    let path = parsed.path().trim_end_matches('/');
    Ok([
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ),
    ])
}

/// Fetches and checks `issuer`'s metadata: RFC 8414 first, OpenID Connect's location when that
/// one is missing or wrong. A document that names another issuer is never used.
pub async fn discover(client: &Outbound, issuer: &str) -> Result<Metadata, DiscoveryError> {
    let [rfc8414, openid] = metadata_urls(issuer)?;
    let first = match fetch(client, &rfc8414, issuer).await {
        Ok(metadata) => return Ok(metadata),
        Err(e) => e,
    };
    let second = match fetch(client, &openid, issuer).await {
        Ok(metadata) => return Ok(metadata),
        Err(e) => e,
    };
    // A document that was there but wrong says more than a missing one.
    Err(match (first, second) {
        (Fetch::Invalid(e), _) | (_, Fetch::Invalid(e)) => e,
        (Fetch::Unreachable(rfc8414), Fetch::Unreachable(openid)) => DiscoveryError::Unreachable {
            rfc8414: rfc8414.to_string(),
            openid: openid.to_string(),
        },
    })
}

enum Fetch {
    Unreachable(OutboundError),
    Invalid(DiscoveryError),
}

async fn fetch(client: &Outbound, url: &str, issuer: &str) -> Result<Metadata, Fetch> {
    let json = client
        .get_json(url, None)
        .await
        .map_err(Fetch::Unreachable)?;
    parse(url, issuer, json).map_err(Fetch::Invalid)
}

/// Checks a metadata document fetched from `url` for `issuer`.
pub fn parse(url: &str, issuer: &str, json: serde_json::Value) -> Result<Metadata, DiscoveryError> {
    let raw = match json {
        serde_json::Value::Object(map) => map,
        _ => {
            return Err(DiscoveryError::IssuerMismatch {
                url: url.to_string(),
                expected: issuer.to_string(),
                found: String::new(),
            });
        }
    };
    let found = raw
        .get("issuer")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if found != issuer {
        return Err(DiscoveryError::IssuerMismatch {
            url: url.to_string(),
            expected: issuer.to_string(),
            found: found.to_string(),
        });
    }
    let endpoint = |member: &'static str| -> Result<Option<String>, DiscoveryError> {
        match raw.get(member).and_then(|v| v.as_str()) {
            None => Ok(None),
            Some(value) if value.starts_with("https://") => Ok(Some(value.to_string())),
            Some(_) => Err(DiscoveryError::BadEndpoint {
                url: url.to_string(),
                member,
            }),
        }
    };
    Ok(Metadata {
        issuer: found.to_string(),
        jwks_uri: endpoint("jwks_uri")?,
        authorization_endpoint: endpoint("authorization_endpoint")?,
        token_endpoint: endpoint("token_endpoint")?,
        userinfo_endpoint: endpoint("userinfo_endpoint")?,
        introspection_endpoint: endpoint("introspection_endpoint")?,
        end_session_endpoint: endpoint("end_session_endpoint")?,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc8414_inserts_the_well_known_path_before_the_issuer_path() {
        let [a, b] = metadata_urls("https://sso.example.com/realms/corp").unwrap();
        assert_eq!(
            a,
            "https://sso.example.com/.well-known/oauth-authorization-server/realms/corp"
        );
        assert_eq!(
            b,
            "https://sso.example.com/realms/corp/.well-known/openid-configuration"
        );
        let [a, b] = metadata_urls("https://login.example.com").unwrap();
        assert_eq!(
            a,
            "https://login.example.com/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            b,
            "https://login.example.com/.well-known/openid-configuration"
        );
    }

    #[test]
    fn issuers_must_be_https_without_query() {
        for bad in [
            "http://sso.example.com",
            "sso.example.com",
            "https://sso.example.com/?tenant=1",
        ] {
            assert!(metadata_urls(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_issuer_must_match_exactly() {
        let issuer = "https://sso.example.com/realms/corp";
        for found in [
            "https://sso.example.com/realms/corp/",
            "https://SSO.example.com/realms/corp",
            "https://evil.example.com/realms/corp",
        ] {
            let err = parse("u", issuer, json!({"issuer": found})).unwrap_err();
            assert!(
                matches!(err, DiscoveryError::IssuerMismatch { .. }),
                "{found}"
            );
        }
        assert!(parse("u", issuer, json!({})).is_err());
        let ok = parse(
            "u",
            issuer,
            json!({"issuer": issuer, "jwks_uri": "https://sso.example.com/certs"}),
        )
        .unwrap();
        assert_eq!(
            ok.jwks_uri.as_deref(),
            Some("https://sso.example.com/certs")
        );
    }

    #[test]
    fn endpoints_must_be_https() {
        let issuer = "https://sso.example.com";
        let err = parse(
            "u",
            issuer,
            json!({"issuer": issuer, "jwks_uri": "http://sso.example.com/certs"}),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DiscoveryError::BadEndpoint {
                member: "jwks_uri",
                ..
            }
        ));
    }
}
