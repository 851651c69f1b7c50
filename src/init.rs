//! `gatehouse init [DIR]` (SPEC §1): a ready-to-edit deployment in one folder: a commented
//! `gatehouse.toml`, an Ed25519 signing key (RFC 8410, PKCS#8 PEM), a self-signed certificate
//! for `localhost` with its key, and a data folder. It never overwrites a file: when any of
//! them exists, nothing is written.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The files `init` writes, relative to the folder, in the order they are written.
pub const CONFIG_FILE: &str = "gatehouse.toml";
pub const SIGNING_KEY_FILE: &str = "keys/signing.pem";
pub const CERT_FILE: &str = "tls/cert.pem";
pub const CERT_KEY_FILE: &str = "tls/key.pem";
/// The folder for the SQLite store.
pub const DATA_DIR: &str = "data";

/// The address of the sample backend that the example routes point at
/// (`gatehouse sample-backend`'s default).
pub const SAMPLE_BACKEND: &str = "127.0.0.1:8090";

/// Why `init` wrote nothing (exit code 1: the usage was right, the folder was not).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already exists: gatehouse init never overwrites a file (nothing was written)")]
    Exists(PathBuf),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    Generate(String),
}

/// What `init` wrote.
#[derive(Debug)]
pub struct Initialized {
    /// The folder, as given.
    pub dir: PathBuf,
    /// Every file and folder made, relative to `dir`.
    pub written: Vec<&'static str>,
}

/// Writes a new deployment into `dir` (made when missing).
pub fn init(dir: &Path) -> Result<Initialized, InitError> {
    // Everything is generated before the first file is written, and every target is checked
    // first, so a refusal or a failure to generate leaves the folder as it was.
    let (cert_pem, key_pem) = certificate()?;
    let files = [
        (CONFIG_FILE, config_text(), false),
        (SIGNING_KEY_FILE, signing_key()?, true),
        (CERT_FILE, cert_pem, false),
        (CERT_KEY_FILE, key_pem, true),
    ];
    for (name, _, _) in &files {
        let path = dir.join(name);
        if path.symlink_metadata().is_ok() {
            return Err(InitError::Exists(path));
        }
    }
    let data = dir.join(DATA_DIR);
    if data.symlink_metadata().is_ok() && !data.is_dir() {
        return Err(InitError::Exists(data));
    }
    let mut written = Vec::new();
    let result = (|| {
        for (name, text, private) in &files {
            write_new(&dir.join(name), text, *private)?;
            written.push(*name);
        }
        make_private_dir(&data)?;
        Ok(())
    })();
    if let Err(e) = result {
        // Leave nothing half-made: a file written here is removed again.
        for name in &written {
            let _ = std::fs::remove_file(dir.join(name));
        }
        return Err(e);
    }
    written.push(DATA_DIR);
    Ok(Initialized {
        dir: dir.to_path_buf(),
        written,
    })
}

/// Creates `path` (and its folder), failing when it exists; `private` files are 0600.
fn write_new(path: &Path, text: &str, private: bool) -> Result<(), InitError> {
    let io = |e| InitError::Io(path.to_path_buf(), e);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            InitError::Exists(path.to_path_buf())
        } else {
            io(e)
        }
    })?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The data folder, readable by its owner only (the store holds token hashes and sessions).
fn make_private_dir(path: &Path) -> Result<(), InitError> {
    let io = |e| InitError::Io(path.to_path_buf(), e);
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).map_err(io)
}

fn signing_key() -> Result<String, InitError> {
    crate::auth::keys::generate_pem()
        .map(|pem| pem.expose().to_string())
        .map_err(|e| InitError::Generate(format!("making the signing key: {e}")))
}

/// A self-signed ECDSA P-256 certificate for `localhost`, 127.0.0.1 and ::1, and its PKCS#8
/// key, both PEM.
fn certificate() -> Result<(String, String), InitError> {
    let fail = |e: rcgen::Error| InitError::Generate(format!("making the certificate: {e}"));
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let mut params = rcgen::CertificateParams::new(names).map_err(fail)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "localhost (gatehouse init: replace me)",
    );
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The commented config `init` writes: every section a first deployment needs, each value
/// the default or a safe first choice, and routes to the sample backend.
pub fn config_text() -> String {
    format!(
        r##"# gatehouse configuration, written by `gatehouse init`.
#
# Every key not written here has its default; config/gatehouse.toml in the gatehouse
# repository (and the README's configuration reference) lists them all. Paths are relative
# to this file's folder. Durations read "30s", "15m", "2h", "30d". Any string may use
# ${{ENV_VAR}}; a secret may instead come from a file (password_hash_file, url_file,
# client_secret_file). Check this file with:
#   gatehouse check-config --config gatehouse.toml

[server]
# Only this machine can reach a first run; "0.0.0.0:8443" serves the network.
listen = "127.0.0.1:8443"
# The address clients use: the token issuer and the base of every redirect. Change it with
# the certificate when you serve a real host name.
public_url = "https://localhost:8443"
# http_redirect_listen = "0.0.0.0:8080"   # a plain listener that redirects to https

[server.tls]
# A self-signed certificate for localhost made by `gatehouse init`: clients must be told to
# trust it (curl --cacert tls/cert.pem). Replace both files with a real certificate, e.g.
# from certbot or cert-manager: with watch = true a renewal is picked up within seconds.
cert = "{CERT_FILE}"
key = "{CERT_KEY_FILE}"
watch = true
# More certificates, chosen by the name the client asks for (SNI, wildcards included):
# extra = [ {{ cert = "tls/other.pem", key = "tls/other.key" }} ]

[admin]
# /metrics, /healthz, /readyz in plain HTTP: keep it private.
listen = "127.0.0.1:9090"

[log]
format = "text"                 # or "json"
level = "info"

[store]
# SQLite in the data folder; "postgres://user@host/db" for several replicas.
url = "sqlite://{DATA_DIR}/gatehouse.db"

[oauth]
# Ed25519 keys that sign access tokens: the first signs, all verify. Replicas share them.
signing_keys = ["{SIGNING_KEY_FILE}"]
access_token_ttl = "2h"
refresh_token_ttl = "30d"

# Users who sign in with a password. Make a hash with `gatehouse hash-password` and add one:
# [[users]]
# name = "admin"
# password_hash = "$argon2id$v=19$..."   # or password_hash_file = "admin.hash"
# max_scope = "ADMIN"                    # READ < WRITE < ADMIN < SYSTEM_ADMIN

# Apps are registered through the management API (POST /v1/oauthApps with an ADMIN token),
# or declared here:
# [[apps]]
# client_id = "reporting"
# client_secret = "${{REPORTING_SECRET}}"
# display_name = "Reporting"
# allowed_callback_urls = ["https://reports.example.com/callback"]
# scopes = ["READ"]

# What is proxied where. Both routes point at the sample backend, which
# `gatehouse sample-backend --listen {SAMPLE_BACKEND}` starts; point them at your service.
[[routes]]
path = "/rest/api"
upstream = "http://{SAMPLE_BACKEND}"
auth = "bearer"                 # a bearer token (access token or personal access token)
scopes = {{ GET = "READ", HEAD = "READ", "*" = "WRITE" }}

[[routes]]
path = "/rest/admin"
upstream = "http://{SAMPLE_BACKEND}"
auth = "bearer"
scope = "ADMIN"
"##
    )
}

/// The commands to run next, ready to paste; `gatehouse` is how to call this binary.
pub fn next_steps(done: &Initialized, gatehouse: &str) -> String {
    let mut out = String::new();
    let dir = done.dir.display().to_string();
    let absolute =
        std::fs::canonicalize(&done.dir).map_or_else(|_| dir.clone(), |p| p.display().to_string());
    let _ = writeln!(
        out,
        "gatehouse init: wrote {} in {dir}",
        done.written.join(", ")
    );
    let _ = writeln!(out, "\nNext, in a shell:");
    if done.dir != Path::new(".") {
        let _ = writeln!(out, "cd {}", shell_word(&dir));
    }
    let _ = writeln!(
        out,
        "# 1. A user: hash a password (typed twice, not shown) and add the user to {CONFIG_FILE}"
    );
    let _ = writeln!(out, "HASH=$({gatehouse} hash-password)");
    let _ = writeln!(out, "{}", ADD_USER_LINE);
    let _ = writeln!(out, "{gatehouse} check-config --config {CONFIG_FILE}");
    let _ = writeln!(
        out,
        "# 2. The sample backend the example routes point at, and the gateway (Ctrl-C stops both):"
    );
    let _ = writeln!(
        out,
        "{gatehouse} sample-backend --listen {SAMPLE_BACKEND} &"
    );
    let _ = writeln!(out, "{gatehouse} serve --config {CONFIG_FILE}");
    let _ = writeln!(
        out,
        "\n# 3. In a second shell (the first one runs the gateway), in {absolute}: a personal access token, and a request through the gateway"
    );
    let _ = writeln!(
        out,
        "PAT=$({gatehouse} token create --config {CONFIG_FILE} --user admin --scope ADMIN)"
    );
    let _ = writeln!(
        out,
        "curl --cacert {CERT_FILE} -H \"Authorization: Bearer $PAT\" https://localhost:8443/rest/api/content"
    );
    out
}

/// Appends the user `admin` with the hash in `$HASH` to the config.
pub const ADD_USER_LINE: &str = r#"printf '\n[[users]]\nname = "admin"\npassword_hash = "%s"\nmax_scope = "ADMIN"\n' "$HASH" >> gatehouse.toml"#;

/// `word` as one shell word: as it is when it holds only safe characters, else single-quoted.
pub fn shell_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_it_writes_is_valid_and_names_the_files_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let done = init(dir.path()).unwrap();
        let config = crate::config::Config::load(&dir.path().join(CONFIG_FILE))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.server.tls.cert, dir.path().join(CERT_FILE));
        assert_eq!(config.server.tls.key, dir.path().join(CERT_KEY_FILE));
        assert_eq!(
            config.oauth.signing_keys,
            [dir.path().join(SIGNING_KEY_FILE)]
        );
        assert_eq!(config.routes.len(), 2);
        crate::server::files::load(&config).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            done.written,
            [
                CONFIG_FILE,
                SIGNING_KEY_FILE,
                CERT_FILE,
                CERT_KEY_FILE,
                DATA_DIR
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_and_the_data_folder_are_for_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        init(dir.path()).unwrap();
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(SIGNING_KEY_FILE), 0o600);
        assert_eq!(mode(CERT_KEY_FILE), 0o600);
        assert_eq!(mode(DATA_DIR), 0o700);
        assert_eq!(
            mode(CONFIG_FILE) & 0o022,
            0,
            "the config is not writable by others"
        );
    }

    #[test]
    fn an_existing_file_is_never_overwritten_and_nothing_is_written() {
        for existing in [CONFIG_FILE, SIGNING_KEY_FILE, CERT_FILE, CERT_KEY_FILE] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(existing);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "mine").unwrap();
            let err = init(dir.path()).unwrap_err();
            assert!(matches!(&err, InitError::Exists(p) if *p == path), "{err}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
            for other in [CONFIG_FILE, SIGNING_KEY_FILE, CERT_FILE, CERT_KEY_FILE] {
                if other != existing {
                    assert!(!dir.path().join(other).exists(), "{other} was written");
                }
            }
            assert!(!dir.path().join(DATA_DIR).exists());
        }
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("my-gateway/x.toml"), "my-gateway/x.toml");
        assert_eq!(shell_word("my gateway"), "'my gateway'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
