//! The Prometheus registry and a typed handle for every metric family of SPEC §4. Every family
//! is registered at start; labels only take values from bounded sets (route labels come from
//! the config, methods outside the standard set count as `OTHER`).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Buckets for request durations, from 0.5 ms to 60 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// All metric families; cheap to clone (each family is reference-counted).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub upstream_request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub auth_decisions: IntCounterVec,
    pub token_cache_requests: IntCounterVec,
    pub token_cache_entries: IntGauge,
    pub tokens_issued: IntCounterVec,
    pub token_errors: IntCounterVec,
    pub login_attempts: IntCounterVec,
    pub connections_active: IntGaugeVec,
    /// JWKS fetches of foreign issuers (SPEC §7.2) by issuer name and result.
    pub jwks_refreshes: IntCounterVec,
    /// RFC 7662 introspection calls to foreign issuers by issuer name and result.
    pub introspections: IntCounterVec,
    /// Sign-ins through an OpenID Connect provider (SPEC §7.1) by provider and result.
    pub idp_logins: IntCounterVec,
    /// Idle HTTP/1.1 client connections over TLS held without their HTTP buffers (parked;
    /// docs/performance-notes.md): a part of `gatehouse_connections_active{listener="https"}`.
    pub connections_parked: IntGauge,
}

impl Metrics {
    /// Registers every family in a fresh registry (one per `App`, so tests can run several).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram = |name: &str, help: &str| -> Result<HistogramVec, prometheus::Error> {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let h = HistogramVec::new(opts, &["route"])?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let metrics = Self {
            http_requests: counter(
                "gatehouse_http_requests_total",
                "Requests answered on the public listeners.",
                &["route", "method", "status"],
            )?,
            http_request_duration: histogram(
                "gatehouse_http_request_duration_seconds",
                "Time from request head to response head.",
            )?,
            upstream_request_duration: histogram(
                "gatehouse_upstream_request_duration_seconds",
                "Time the upstream took to answer with a response head.",
            )?,
            upstream_errors: counter(
                "gatehouse_upstream_errors_total",
                "Upstream failures by kind (connect, timeout, protocol).",
                &["route", "kind"],
            )?,
            auth_decisions: counter(
                "gatehouse_auth_decisions_total",
                "Authentication and authorization decisions on proxied routes.",
                &["route", "result"],
            )?,
            token_cache_requests: counter(
                "gatehouse_token_cache_requests_total",
                "Token validation cache lookups.",
                &["result"],
            )?,
            token_cache_entries: {
                let g = IntGauge::new(
                    "gatehouse_token_cache_entries",
                    "Entries in the token validation cache.",
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            tokens_issued: counter(
                "gatehouse_tokens_issued_total",
                "Access tokens issued by grant type.",
                &["grant_type"],
            )?,
            token_errors: counter(
                "gatehouse_token_errors_total",
                "Token endpoint errors by RFC 6749 error code.",
                &["error"],
            )?,
            login_attempts: counter(
                "gatehouse_login_attempts_total",
                "Login attempts by result.",
                &["result"],
            )?,
            connections_active: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "gatehouse_connections_active",
                        "Open client connections by listener.",
                    ),
                    &["listener"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            jwks_refreshes: counter(
                "gatehouse_jwks_refreshes_total",
                "JWKS fetches from identity providers and issuers, by result.",
                &["issuer", "result"],
            )?,
            introspections: counter(
                "gatehouse_introspections_total",
                "Token introspection calls to other issuers, by result.",
                &["issuer", "result"],
            )?,
            idp_logins: counter(
                "gatehouse_idp_logins_total",
                "Sign-ins through an OpenID Connect provider, by provider and result.",
                &["provider", "result"],
            )?,
            connections_parked: {
                let g = IntGauge::new(
                    "gatehouse_connections_parked",
                    "Idle HTTPS connections parked without their HTTP buffers.",
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            registry,
        };
        let build = IntGaugeVec::new(
            Opts::new(
                "gatehouse_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        metrics.registry.register(Box::new(build))?;
        #[cfg(target_os = "linux")]
        metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(metrics)
    }

    /// The text exposition format of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// A bounded label for an HTTP method.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// A bounded label for a status code (avoids formatting the number on every request).
pub fn status_label(status: http::StatusCode) -> &'static str {
    status
        .canonical_reason()
        .map_or("other", |_| status_str(status.as_u16()))
}

fn status_str(code: u16) -> &'static str {
    const CODES: &[(u16, &str)] = &[
        (100, "100"),
        (101, "101"),
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (206, "206"),
        (301, "301"),
        (302, "302"),
        (303, "303"),
        (304, "304"),
        (307, "307"),
        (308, "308"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (406, "406"),
        (408, "408"),
        (409, "409"),
        (410, "410"),
        (411, "411"),
        (412, "412"),
        (413, "413"),
        (414, "414"),
        (415, "415"),
        (416, "416"),
        (422, "422"),
        (429, "429"),
        (431, "431"),
        (500, "500"),
        (501, "501"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    CODES.iter().find(|(c, _)| *c == code).map_or(
        match code / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
        |(_, s)| s,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_registered_at_start() {
        let m = Metrics::new().unwrap();
        // Labelled families appear with their first observation (SPEC §4); observe each once.
        m.http_requests
            .with_label_values(&["/", "GET", "200"])
            .inc();
        m.http_request_duration
            .with_label_values(&["/"])
            .observe(0.1);
        m.upstream_request_duration
            .with_label_values(&["/"])
            .observe(0.1);
        m.upstream_errors.with_label_values(&["/", "connect"]).inc();
        m.auth_decisions.with_label_values(&["/", "allowed"]).inc();
        m.token_cache_requests.with_label_values(&["hit"]).inc();
        m.tokens_issued
            .with_label_values(&["authorization_code"])
            .inc();
        m.token_errors.with_label_values(&["invalid_grant"]).inc();
        m.login_attempts.with_label_values(&["success"]).inc();
        m.connections_active.with_label_values(&["https"]).inc();
        m.jwks_refreshes.with_label_values(&["corp", "ok"]).inc();
        m.introspections
            .with_label_values(&["corp", "active"])
            .inc();
        m.idp_logins.with_label_values(&["corp", "success"]).inc();
        let text = String::from_utf8(m.render()).unwrap();
        for name in [
            "gatehouse_http_requests_total",
            "gatehouse_http_request_duration_seconds",
            "gatehouse_upstream_request_duration_seconds",
            "gatehouse_upstream_errors_total",
            "gatehouse_auth_decisions_total",
            "gatehouse_token_cache_requests_total",
            "gatehouse_token_cache_entries",
            "gatehouse_tokens_issued_total",
            "gatehouse_token_errors_total",
            "gatehouse_login_attempts_total",
            "gatehouse_connections_active",
            "gatehouse_jwks_refreshes_total",
            "gatehouse_introspections_total",
            "gatehouse_idp_logins_total",
            "gatehouse_connections_parked",
            "gatehouse_build_info",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{text}"
            );
        }
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(
            method_label(&http::Method::from_bytes(b"BREW").unwrap()),
            "OTHER"
        );
        assert_eq!(
            status_label(http::StatusCode::from_u16(599).unwrap()),
            "other"
        );
        assert_eq!(
            status_label(http::StatusCode::from_u16(418).unwrap()),
            "4xx"
        );
        assert_eq!(status_label(http::StatusCode::BAD_GATEWAY), "502");
    }
}
