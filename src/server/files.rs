//! The files the config names: the TLS certificate and key (RFC 8446 via rustls), the Ed25519
//! signing keys (RFC 8410), each route's `upstream_ca` and each issuer's `ca`. `check-config`, `serve` and a
//! reload load them through this one function, and every problem is a config problem located
//! at the key that names the file (SPEC §1: exit 2), e.g.
//! `gatehouse.toml:7:8: server.tls.cert: cannot read /etc/gatehouse/cert.pem: No such file…`.

use crate::auth::keys::{KeyError, SigningKeys};
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::proxy::forward::{ForwarderError, load_ca};

use super::tls::{self, LoadedTls, PairIndex, TlsError};

/// What the files hold, ready to serve with.
pub struct ConfigFiles {
    pub tls: LoadedTls,
    pub keys: SigningKeys,
}

/// Loads every file `config` names, or reports every one that does not load.
pub fn load(config: &Config) -> Result<ConfigFiles, ConfigErrors> {
    let mut errors = Vec::new();
    let tls = match tls::load(&config.server.tls) {
        Ok(tls) => Some(tls),
        Err(problems) => {
            errors.extend(problems.into_iter().map(|(i, e)| tls_error(config, i, e)));
            None
        }
    };
    let keys = signing_keys(config, &mut errors);
    for (i, route) in config.routes.iter().enumerate() {
        if let Some(path) = &route.upstream_ca
            && let Err(e) = load_ca(path)
        {
            errors.push(config.error_at(&format!("routes[{i}].upstream_ca"), ca_problem(e)));
        }
    }
    // An identity provider's `ca` must be a PEM of certificates its client can trust.
    for (i, provider) in config.identity_providers.iter().enumerate() {
        if let Some(path) = &provider.ca {
            let client = crate::federation::Trust::from_ca_path(path).and_then(|trust| {
                crate::federation::Outbound::new(&trust, crate::federation::client::DEFAULT_TIMEOUT)
            });
            if let Err(e) = client {
                let key = format!("identity_providers[{i}].ca");
                errors.push(config.error_at(&key, e));
            }
        }
    }
    for (i, issuer) in config.issuers.iter().enumerate() {
        if let Some(path) = &issuer.ca {
            let checked = crate::federation::Trust::from_ca_path(path).and_then(|trust| {
                crate::federation::Outbound::new(&trust, crate::federation::client::DEFAULT_TIMEOUT)
            });
            if let Err(e) = checked {
                errors.push(config.error_at(&format!("issuers[{i}].ca"), e));
            }
        }
    }
    match (tls, keys) {
        (Some(tls), Some(keys)) if errors.is_empty() => Ok(ConfigFiles { tls, keys }),
        _ => {
            errors.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(errors))
        }
    }
}

/// A certificate problem, at the key that names the file: `server.tls.cert`, or
/// `server.tls.extra[1].key`.
fn tls_error(config: &Config, pair: PairIndex, e: TlsError) -> ConfigError {
    let table = match pair {
        PairIndex::Default => "server.tls".to_string(),
        PairIndex::Extra(i) => format!("server.tls.extra[{i}]"),
    };
    match e {
        TlsError::Key(problem) => config.error_at(&format!("{table}.key"), problem),
        TlsError::Cert(problem) => config.error_at(&format!("{table}.cert"), problem),
        TlsError::Rustls(e) => config.error_at(&format!("{table}.cert"), format!("TLS setup: {e}")),
    }
}

/// The signing keys, each file on its own first so that every bad one is named, then as a set
/// (which refuses the same key twice).
fn signing_keys(config: &Config, errors: &mut Vec<ConfigError>) -> Option<SigningKeys> {
    let paths = &config.oauth.signing_keys;
    let before = errors.len();
    for (i, path) in paths.iter().enumerate() {
        if let Err(e) = SigningKeys::load(std::slice::from_ref(path)) {
            errors.push(config.error_at(&format!("oauth.signing_keys[{i}]"), key_problem(&e)));
        }
    }
    if errors.len() > before {
        return None;
    }
    match SigningKeys::load(paths) {
        Ok(keys) => Some(keys),
        Err(e) => {
            let index = match &e {
                KeyError::Duplicate { path, .. } => paths.iter().rposition(|p| p == path),
                _ => None,
            };
            let key = index.map_or_else(
                || "oauth.signing_keys".to_string(),
                |i| format!("oauth.signing_keys[{i}]"),
            );
            errors.push(config.error_at(&key, key_problem(&e)));
            None
        }
    }
}

fn key_problem(e: &KeyError) -> String {
    match e {
        KeyError::Missing(path) => format!("cannot read {}: file not found", path.display()),
        KeyError::Unreadable { path, source } => {
            format!("cannot read {}: {source}", path.display())
        }
        KeyError::NotEd25519 { path, reason } => format!(
            "{}: not an Ed25519 PKCS#8 private key (-----BEGIN PRIVATE KEY-----): {reason}",
            path.display()
        ),
        KeyError::Duplicate { path, first } => {
            format!("{}: the same key as {}", path.display(), first.display())
        }
        KeyError::NoKeys => "required: at least one Ed25519 PEM key file".to_string(),
        KeyError::Generate(reason) => reason.clone(),
    }
}

fn ca_problem(e: ForwarderError) -> String {
    match e {
        ForwarderError::CaFile { path, source } => {
            format!("cannot read {}: {source}", path.display())
        }
        ForwarderError::CaEmpty { path } => format!(
            "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) found",
            path.display()
        ),
        ForwarderError::CaInvalid { path, reason } => format!("{}: {reason}", path.display()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config_in(dir: &std::path::Path, signing_keys: &str) -> Config {
        let src = format!(
            "[server]\npublic_url = \"https://gw.example.com\"\n[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[oauth]\nsigning_keys = {signing_keys}\n[[routes]]\npath = \"/\"\nupstream = \"https://127.0.0.1:1\"\nauth = \"none\"\nupstream_ca = \"ca.pem\"\n"
        );
        let path = dir.join("gatehouse.toml");
        Config::parse(&src, &path, &|_| None).unwrap()
    }

    #[test]
    fn extra_certificates_are_checked_at_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pem = crate::auth::keys::generate_pem().unwrap();
        std::fs::write(dir.path().join("k.pem"), pem.expose()).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["b.test".to_string()]).unwrap();
        std::fs::write(dir.path().join("b.pem"), other.cert.pem()).unwrap();
        let src = "[server]\npublic_url = \"https://gw.example.com\"\n[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\nextra = [\n  { cert = \"gone.pem\", key = \"key.pem\" },\n  { cert = \"b.pem\", key = \"key.pem\" },\n]\n[oauth]\nsigning_keys = [\"k.pem\"]\n";
        let config = Config::parse(src, &dir.path().join("g.toml"), &|_| None).unwrap();
        let message = load(&config).err().unwrap().to_string();
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines.len(), 2, "{message}");
        assert!(
            lines[0].contains(":7:12: server.tls.extra[0].cert: cannot read"),
            "{message}"
        );
        assert!(
            lines[1].contains(":8:27: server.tls.extra[1].key: ")
                && lines[1].contains("does not match the certificate"),
            "{message}"
        );

        let bad = "[server]\npublic_url = \"https://gw.example.com\"\n[server.tls]\ncert = \"c\"\nkey = \"k\"\nextra = [ { cert = \"c\", kye = \"k\" }, \"x\" ]\nwatch = \"yes\"\n[oauth]\nsigning_keys = [\"k.pem\"]\n";
        let errors = Config::parse(bad, Path::new("g.toml"), &|_| None)
            .err()
            .unwrap()
            .to_string();
        for expected in [
            "g.toml:6:11: server.tls.extra[0].key: required",
            "g.toml:6:25: unknown key 'server.tls.extra[0].kye' (did you mean 'key'?)",
            "g.toml:6:38: server.tls.extra[1]: expected a table",
            "g.toml:7:9: server.tls.watch: expected true or false",
        ] {
            assert!(errors.contains(expected), "{expected} not in {errors}");
        }
    }

    #[test]
    fn every_file_problem_is_reported_at_once_at_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let pem = crate::auth::keys::generate_pem().unwrap();
        std::fs::write(dir.path().join("k.pem"), pem.expose()).unwrap();
        std::fs::write(dir.path().join("junk.pem"), "junk").unwrap();
        let config = config_in(dir.path(), r#"["k.pem", "junk.pem", "gone.pem"]"#);
        let Err(errors) = load(&config) else {
            panic!("nothing loads")
        };
        let got: Vec<(usize, usize, &str)> = errors
            .0
            .iter()
            .map(|e| (e.line, e.column, e.message.split(':').next().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (4, 8, "server.tls.cert"),
                (5, 7, "server.tls.key"),
                (7, 26, "oauth.signing_keys[1]"),
                (7, 38, "oauth.signing_keys[2]"),
                (12, 15, "routes[0].upstream_ca"),
            ],
            "{errors}"
        );

        // Each file loads, but the same key is named twice: the second is the mistake.
        let config = config_in(dir.path(), r#"["k.pem", "./k.pem"]"#);
        let message = load(&config).err().unwrap().to_string();
        assert!(
            message.contains(":7:26: oauth.signing_keys[1]: "),
            "{message}"
        );
        assert!(message.contains("the same key as"), "{message}");
    }

    /// An identity provider's `ca` that cannot be read or holds no certificate is a config
    /// problem at that key, as `check-config` reports it.
    #[test]
    fn an_identity_providers_ca_must_load() {
        let dir = tempfile::tempdir().unwrap();
        let pem = crate::auth::keys::generate_pem().unwrap();
        std::fs::write(dir.path().join("k.pem"), pem.expose()).unwrap();
        std::fs::write(dir.path().join("junk.pem"), "junk").unwrap();
        let src = |ca: &str| {
            format!(
                "[server]\npublic_url = \"https://gw.example.com\"\n[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[oauth]\nsigning_keys = [\"k.pem\"]\n[[identity_providers]]\nname = \"corp\"\nissuer = \"https://sso.example.com\"\nclient_id = \"g\"\nclient_auth = \"none\"\nca = \"{ca}\"\n"
            )
        };
        for ca in ["gone.pem", "junk.pem"] {
            let path = dir.path().join("gatehouse.toml");
            let config = Config::parse(&src(ca), &path, &|_| None).unwrap();
            let message = load(&config).err().unwrap().to_string();
            assert!(
                message.contains(":13:6: identity_providers[0].ca: "),
                "{ca}: {message}"
            );
        }
    }
}
