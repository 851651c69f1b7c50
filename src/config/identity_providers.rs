//! `[[identity_providers]]` (SPEC §7.1, §7.5): the OpenID Connect providers people may sign in
//! with, each key with its default and its checks (name shape, issuer URL, client
//! authentication, signature algorithms that are never `none` or an HMAC, known scopes).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use toml_edit::TableLike;

use super::Secret;
use super::decode::Decoder;
use super::scopes::check_known;
use super::sections::{absolute_url, array_len, array_of_tables, resolve};

/// `[[identity_providers]]`: one OpenID Connect provider shown on `/login`.
#[derive(Clone, Debug)]
pub struct IdentityProviderEntry {
    /// `name`: `[a-z0-9-]{1,32}`, unique; the paths `/login/NAME` and `/login/NAME/callback`.
    /// Required.
    pub name: String,
    /// `display_name`: the button reads "Sign in with DISPLAY_NAME". Default: `name`.
    pub display_name: String,
    /// `issuer`: the provider's issuer URL, exactly as its discovery document and ID tokens
    /// say it (`https://`). Required.
    pub issuer: String,
    /// `client_id`: the gateway's client id at the provider. Required.
    pub client_id: String,
    /// `client_secret` (or `client_secret_file`): required unless `client_auth = "none"`.
    pub client_secret: Option<Secret>,
    /// `client_auth`: how the code is exchanged. Default `client_secret_basic`.
    pub client_auth: ClientAuth,
    /// `scopes`: asked of the provider; must include `openid`. Default
    /// `["openid", "profile", "email"]`.
    pub scopes: Vec<String>,
    /// `algorithms`: the ID-token signature algorithms accepted (never `none` or `HS*`).
    /// Default `["RS256", "ES256", "EdDSA"]`.
    pub algorithms: Vec<String>,
    /// `username_claim`: the claim that names the user. Default `preferred_username` (then
    /// `sub` when the token has none).
    pub username_claim: String,
    /// `username_prefix`: put before the claim's value. Default `""`.
    pub username_prefix: String,
    /// `groups_claim`: a JSON array of group names. Default `groups`.
    pub groups_claim: String,
    /// `default_scope`: the scope every user of this provider holds; `""` for none. Default
    /// `READ`.
    pub default_scope: String,
    /// `group_scopes`: group → scope; the user holds the highest of these and
    /// `default_scope`. Default none.
    pub group_scopes: BTreeMap<String, String>,
    /// `allowed_groups`: when not empty, only members of one of these may sign in.
    pub allowed_groups: Vec<String>,
    /// `use_userinfo`: merge the userinfo endpoint's claims. Default `false`.
    pub use_userinfo: bool,
    /// `ca`: a PEM file to trust for this provider (relative to the config's folder);
    /// `None` trusts the system roots.
    pub ca: Option<PathBuf>,
}

/// `identity_providers.client_auth` (OpenID Connect Core §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (the default).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A public client: the PKCE verifier alone.
    None,
}

impl ClientAuth {
    /// The name the config and the provider's metadata use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }
}

/// The signature algorithms an ID token may use: asymmetric only (RFC 8725 §3.1, §3.2).
pub const KNOWN_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// The keys of an `[[identity_providers]]` entry, in the order of [`IdentityProviderEntry`].
pub(super) const KEYS: &[&str] = &[
    "name",
    "display_name",
    "issuer",
    "client_id",
    "client_secret",
    "client_secret_file",
    "client_auth",
    "scopes",
    "algorithms",
    "username_claim",
    "username_prefix",
    "groups_claim",
    "default_scope",
    "group_scopes",
    "allowed_groups",
    "use_userinfo",
    "ca",
];

/// Whether `name` is a valid provider name: `[a-z0-9-]{1,32}`.
pub fn is_provider_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Every `[[identity_providers]]` entry of `root`; `known` is the scope set, `base` the
/// config's folder.
pub(super) fn decode(
    d: &mut Decoder<'_>,
    root: &dyn TableLike,
    known: &HashSet<String>,
    base: &std::path::Path,
) -> Vec<IdentityProviderEntry> {
    let mut out: Vec<IdentityProviderEntry> = Vec::new();
    let tables = array_of_tables(d, root, "identity_providers");
    for (i, (t, span)) in tables.into_iter().enumerate() {
        let sec = format!("identity_providers[{i}]");
        d.reject_unknown(t, &sec, KEYS);
        let what = "a name such as \"corp\"";
        let (name, name_span) = d.required_non_empty_str(t, &sec, "name", span.clone(), what);
        if !name.is_empty() && !is_provider_name(&name) {
            d.error(
                name_span.clone(),
                format!("{sec}.name: '{name}' must be 1-32 characters of a-z 0-9 -"),
            );
        }
        if !name.is_empty() && out.iter().any(|p| p.name == name) {
            d.error(
                name_span,
                format!("{sec}.name: provider '{name}' is declared twice"),
            );
        }
        let display_name = match d.opt_non_empty_str(t, &sec, "display_name", "the button's text") {
            Some((text, _)) => text,
            None => name.clone(),
        };
        let what = "the provider's issuer URL such as \"https://sso.example.com/realms/corp\"";
        let (issuer, issuer_span) = d.required_non_empty_str(t, &sec, "issuer", span.clone(), what);
        if !issuer.is_empty() {
            match absolute_url(&issuer, "https://sso.example.com/realms/corp") {
                Err(problem) => d.error(issuer_span, format!("{sec}.issuer: {problem}")),
                Ok(uri) if uri.scheme_str() != Some("https") => d.error(
                    issuer_span,
                    format!("{sec}.issuer: must be an https:// URL (OpenID Connect Core §3.1.2.1)"),
                ),
                Ok(_) => {}
            }
        }
        let what = "the gateway's client id at the provider";
        let (client_id, _) = d.required_non_empty_str(t, &sec, "client_id", span.clone(), what);
        let client_auth = match d.opt_str(t, &sec, "client_auth") {
            None => ClientAuth::ClientSecretBasic,
            Some((v, _)) if v == "client_secret_basic" => ClientAuth::ClientSecretBasic,
            Some((v, _)) if v == "client_secret_post" => ClientAuth::ClientSecretPost,
            Some((v, _)) if v == "none" => ClientAuth::None,
            Some((v, s)) => {
                d.error(
                    s,
                    format!(
                        "{sec}.client_auth: must be \"client_secret_basic\", \
                         \"client_secret_post\" or \"none\", got \"{v}\""
                    ),
                );
                ClientAuth::ClientSecretBasic
            }
        };
        let given = t.get("client_secret").is_some() || t.get("client_secret_file").is_some();
        let secret = d.opt_secret(t, &sec, "client_secret");
        match (&secret, client_auth) {
            (None, ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost) if !given => d
                .error(
                    span.clone(),
                    format!(
                        "{sec}.client_secret: required (or client_secret_file) unless \
                         client_auth = \"none\""
                    ),
                ),
            (Some((_, s)), ClientAuth::None) => d.error(
                s.clone(),
                format!("{sec}.client_secret: client_auth = \"none\" sends no secret"),
            ),
            (Some((v, s)), _) if v.is_empty() => {
                d.error(s.clone(), format!("{sec}.client_secret: must not be empty"))
            }
            _ => {}
        }
        let scopes = if t.get("scopes").is_some() {
            let what = "a scope such as \"openid\"";
            let given = d.non_empty_str_array(t, &sec, "scopes", what);
            if !given.iter().any(|(s, _)| s == "openid") && t.get("scopes").is_some() {
                let at = t.get("scopes").and_then(|i| i.span());
                d.error(
                    at,
                    format!("{sec}.scopes: must include \"openid\" (OpenID Connect Core §3.1.2.1)"),
                );
            }
            given.into_iter().map(|(s, _)| s).collect()
        } else {
            ["openid", "profile", "email"].map(String::from).to_vec()
        };
        let algorithms = algorithms(d, t, &sec);
        let username_claim = claim(d, t, &sec, "username_claim", "preferred_username");
        let username_prefix = d.str(t, &sec, "username_prefix", "");
        if !username_prefix.bytes().all(is_user_name_byte) {
            let at = t.get("username_prefix").and_then(|i| i.span());
            d.error(
                at,
                format!("{sec}.username_prefix: only A-Z a-z 0-9 . _ @ - : (it starts user names)"),
            );
        }
        let groups_claim = claim(d, t, &sec, "groups_claim", "groups");
        let default_scope = match d.opt_str(t, &sec, "default_scope") {
            Some((v, s)) => {
                if !v.is_empty() {
                    check_known(d, known, &v, s, &format!("{sec}.default_scope"));
                }
                v
            }
            None => {
                if !known.contains("READ") {
                    d.error(
                        span.clone(),
                        format!(
                            "{sec}.default_scope: the default \"READ\" is not in [[scopes]]: \
                             give a scope, or \"\" for none"
                        ),
                    );
                }
                "READ".to_owned()
            }
        };
        let mut group_scopes = BTreeMap::new();
        if let Some((map, _)) = d.str_map(t, &sec, "group_scopes") {
            for (group, (scope, s)) in map {
                check_known(d, known, &scope, s, &format!("{sec}.group_scopes.{group}"));
                group_scopes.insert(group, scope);
            }
        }
        let allowed_groups = d
            .non_empty_str_array(t, &sec, "allowed_groups", "a group name")
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let use_userinfo = d.bool(t, &sec, "use_userinfo", false);
        let ca = d
            .opt_non_empty_str(t, &sec, "ca", "a PEM file, or leave the key out")
            .map(|(p, _)| resolve(base, &p));
        out.push(IdentityProviderEntry {
            name,
            display_name,
            issuer,
            client_id,
            client_secret: secret.map(|(s, _)| Secret::new(s)),
            client_auth,
            scopes,
            algorithms,
            username_claim,
            username_prefix,
            groups_claim,
            default_scope,
            group_scopes,
            allowed_groups,
            use_userinfo,
            ca,
        });
    }
    out
}

/// `algorithms`: known asymmetric algorithms, at least one; `none` and HMACs are named as
/// what they are.
fn algorithms(d: &mut Decoder<'_>, t: &dyn TableLike, sec: &str) -> Vec<String> {
    if t.get("algorithms").is_none() {
        return ["RS256", "ES256", "EdDSA"].map(String::from).to_vec();
    }
    let given = d.non_empty_str_array(t, sec, "algorithms", "an algorithm such as \"RS256\"");
    if given.is_empty() && array_len(t, "algorithms") == 0 {
        let at = t.get("algorithms").and_then(|i| i.span());
        d.error(at, format!("{sec}.algorithms: at least one is required"));
    }
    let mut out = Vec::with_capacity(given.len());
    for (j, (alg, s)) in given.into_iter().enumerate() {
        if alg.eq_ignore_ascii_case("none") || alg.to_ascii_uppercase().starts_with("HS") {
            d.error(
                s,
                format!(
                    "{sec}.algorithms[{j}]: '{alg}' is never accepted (an unsigned or \
                     HMAC-signed ID token proves nothing about the provider)"
                ),
            );
        } else if !KNOWN_ALGORITHMS.contains(&alg.as_str()) {
            d.error(
                s,
                format!(
                    "{sec}.algorithms[{j}]: unknown algorithm '{alg}' (known: {})",
                    KNOWN_ALGORITHMS.join(", ")
                ),
            );
        } else {
            out.push(alg);
        }
    }
    out
}

/// A claim name: not empty.
fn claim(d: &mut Decoder<'_>, t: &dyn TableLike, sec: &str, key: &str, default: &str) -> String {
    d.opt_non_empty_str(t, sec, key, "a claim name")
        .map_or_else(|| default.to_owned(), |(s, _)| s)
}

/// The characters of a federated user name (those of `[[users]]` names, and `:` for a
/// prefix such as `corp:`).
pub fn is_user_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._@-:".contains(&b)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ClientAuth, Config, ConfigErrors};

    const BASE: &str = r#"[server]
public_url = "https://gw.example.com"
[server.tls]
cert = "c.pem"
key = "k.pem"
[oauth]
signing_keys = ["s.pem"]
"#;

    fn parse(providers: &str) -> Result<Config, ConfigErrors> {
        let env = |name: &str| (name == "CORP_SECRET").then(|| "s3cret".to_owned());
        let src = format!("{BASE}{providers}");
        Config::parse(&src, Path::new("/etc/gatehouse/g.toml"), &env)
    }

    fn problems(providers: &str) -> Vec<String> {
        match parse(providers) {
            Ok(_) => panic!("accepted:\n{providers}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_provider_gets_every_default() {
        let c = parse(
            "[[identity_providers]]\nname = \"corp\"\nissuer = \"https://sso.example.com/realms/corp\"\n\
             client_id = \"gatehouse\"\nclient_secret = \"${CORP_SECRET}\"\n",
        )
        .unwrap();
        let p = &c.identity_providers[0];
        assert_eq!(p.display_name, "corp");
        assert_eq!(p.client_auth, ClientAuth::ClientSecretBasic);
        assert_eq!(p.client_secret.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(p.scopes, ["openid", "profile", "email"]);
        assert_eq!(p.algorithms, ["RS256", "ES256", "EdDSA"]);
        assert_eq!(p.username_claim, "preferred_username");
        assert_eq!(p.username_prefix, "");
        assert_eq!(p.groups_claim, "groups");
        assert_eq!(p.default_scope, "READ");
        assert!(p.group_scopes.is_empty() && p.allowed_groups.is_empty());
        assert!(!p.use_userinfo);
        assert_eq!(p.ca, None);
        assert!(!format!("{p:?}").contains("s3cret"));
    }

    #[test]
    fn every_rule_is_reported_at_its_location() {
        let src = r#"[[identity_providers]]
name = "Corp"
issuer = "http://sso.example.com"
client_id = "gatehouse"
client_auth = "private_key_jwt"
scopes = ["profile"]
algorithms = ["none", "HS256", "RS1024", "RS256"]
default_scope = "OWNER"
group_scopes = { admins = "ROOT" }

[[identity_providers]]
name = "dup"
client_id = "x"
client_auth = "none"
client_secret = "abc"

[[identity_providers]]
name = "dup"
issuer = "https://sso.example.com"
client_id = "x"
"#;
        let found = problems(src);
        let expected = [
            "g.toml:8:1: identity_providers[0].client_secret: required (or client_secret_file)",
            "g.toml:9:8: identity_providers[0].name: 'Corp' must be 1-32 characters of a-z 0-9 -",
            "g.toml:10:10: identity_providers[0].issuer: must be an https:// URL",
            "g.toml:12:15: identity_providers[0].client_auth: must be",
            "g.toml:13:10: identity_providers[0].scopes: must include \"openid\"",
            "g.toml:14:15: identity_providers[0].algorithms[0]: 'none' is never accepted",
            "g.toml:14:23: identity_providers[0].algorithms[1]: 'HS256' is never accepted",
            "g.toml:14:32: identity_providers[0].algorithms[2]: unknown algorithm 'RS1024'",
            "g.toml:15:17: identity_providers[0].default_scope: unknown scope 'OWNER'",
            "g.toml:16:27: identity_providers[0].group_scopes.admins: unknown scope 'ROOT'",
            "g.toml:18:1: identity_providers[1].issuer: required",
            "g.toml:22:17: identity_providers[1].client_secret: client_auth = \"none\" sends no secret",
            "g.toml:25:8: identity_providers[2].name: provider 'dup' is declared twice",
            "g.toml:24:1: identity_providers[2].client_secret: required (or client_secret_file) unless client_auth = \"none\"",
        ];
        for e in expected {
            assert!(
                found.iter().any(|f| f.contains(e)),
                "missing {e:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn secret_files_and_custom_scope_sets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("corp.secret"), "from-file\n").unwrap();
        let src = format!(
            "{BASE}[[scopes]]\nname = \"view\"\n[[identity_providers]]\nname = \"corp\"\n\
             issuer = \"https://sso.example.com\"\nclient_id = \"g\"\n\
             client_secret_file = \"corp.secret\"\ndefault_scope = \"\"\n\
             group_scopes = {{ viewers = \"view\" }}\nca = \"corp-ca.pem\"\n"
        );
        let c = Config::parse(&src, &dir.path().join("g.toml"), &|_| None).unwrap();
        let p = &c.identity_providers[0];
        assert_eq!(p.client_secret.as_ref().unwrap().expose(), "from-file");
        assert_eq!(p.default_scope, "");
        assert_eq!(
            p.ca.as_deref(),
            Some(dir.path().join("corp-ca.pem").as_path())
        );
        // Without READ in the set, the default must be given.
        let src = format!(
            "{BASE}[[scopes]]\nname = \"view\"\n[[identity_providers]]\nname = \"corp\"\n\
             issuer = \"https://sso.example.com\"\nclient_id = \"g\"\nclient_auth = \"none\"\n"
        );
        let e = Config::parse(&src, Path::new("g.toml"), &|_| None).unwrap_err();
        assert!(
            e.to_string()
                .contains("default_scope: the default \"READ\" is not in [[scopes]]"),
            "{e}"
        );
        // Both the secret and its file.
        let src = format!(
            "{BASE}[[identity_providers]]\nname = \"corp\"\nissuer = \"https://sso.example.com\"\n\
             client_id = \"g\"\nclient_secret = \"a\"\nclient_secret_file = \"corp.secret\"\n"
        );
        let e = Config::parse(&src, &dir.path().join("g.toml"), &|_| None).unwrap_err();
        assert!(
            e.to_string()
                .contains("give client_secret or client_secret_file, not both"),
            "{e}"
        );
    }
}
