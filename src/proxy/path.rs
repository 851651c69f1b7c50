//! Request-path normalization (RFC 3986 §5.2.4 dot segments, §6.2.2.2 percent-encoding, SPEC
//! §3.4), done once so that the route and scope decision is made on exactly the path the
//! upstream receives. The result is canonical: `;` parameters removed from every segment and
//! empty segments merged, as the most lenient backend (Tomcat) reads a path, so that
//! `/;x/rest/admin` cannot slip past the `/rest/admin` route. Encoded `/` or `\`, NUL, dot
//! segments with parameters and dot segments that climb above the root are refused.

use std::borrow::Cow;

/// Why a path was refused (each is a 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    EncodedSlash,
    Backslash,
    Nul,
    AboveRoot,
    DotSegmentParameter,
    Malformed,
}

impl PathError {
    pub fn message(self) -> &'static str {
        match self {
            Self::EncodedSlash => "the path contains an encoded '/'",
            Self::Backslash => "the path contains a backslash",
            Self::Nul => "the path contains a NUL byte",
            Self::AboveRoot => "the path climbs above the root",
            Self::DotSegmentParameter => "the path contains a dot segment with parameters",
            Self::Malformed => "the path is malformed",
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True when nothing in `path` can need rewriting: the common case, which costs one scan.
fn is_plain(path: &[u8]) -> bool {
    let mut prev = b'/';
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'%' | b'\\' | b';' | 0 => return false,
            b'/' if prev == b'/' && i > 0 => return false,
            b'.' if prev == b'/' => return false,
            _ => {}
        }
        prev = b;
    }
    true
}

/// The canonical form of the path of a request target (without its query): what routes are
/// matched against and what the upstream receives. Borrowed when nothing needed rewriting.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::Malformed);
    }
    if is_plain(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(bytes)?;
    canonical_segments(&decoded).map(Cow::Owned)
}

/// Decodes percent-encoded unreserved characters, upper-cases the hex of the rest, and refuses
/// encodings of `/`, `\` and NUL.
fn decode_unreserved(bytes: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            0 => return Err(PathError::Nul),
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).and_then(|&h| hex(h)),
                    bytes.get(i + 2).and_then(|&l| hex(l)),
                ) else {
                    return Err(PathError::Malformed);
                };
                let value = hi * 16 + lo;
                match value {
                    0 => return Err(PathError::Nul),
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::Backslash),
                    v if is_unreserved(v) => out.push(char::from(v)),
                    v => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        out.push('%');
                        out.push(char::from(HEX[usize::from(v >> 4)]));
                        out.push(char::from(HEX[usize::from(v & 15)]));
                    }
                }
                i += 3;
            }
            _ if b.is_ascii() => {
                out.push(char::from(b));
                i += 1;
            }
            _ => return Err(PathError::Malformed),
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on an absolute path whose segments first lose their `;` parameters, with
/// empty segments merged; climbing above `/` is an error. A segment that was only parameters
/// (`/;x/`) is empty and merges away, exactly as a servlet container reads it. A dot segment
/// with parameters (`..;x`) is refused: servers disagree on whether it is a dot segment.
fn canonical_segments(path: &str) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        let bare = segment.split(';').next().unwrap_or("");
        if bare.len() != segment.len() && (bare == "." || bare == "..") {
            return Err(PathError::DotSegmentParameter);
        }
        match bare {
            "" | "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fwd(p: &str) -> Result<String, PathError> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn plain_paths_are_borrowed() {
        let n = normalize("/rest/api/content/12").unwrap();
        assert!(matches!(n, Cow::Borrowed(_)));
        assert_eq!(n, "/rest/api/content/12");
    }

    #[test]
    fn dot_segments_and_doubled_slashes() {
        assert_eq!(fwd("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(fwd("/a//b///c").unwrap(), "/a/b/c");
        assert_eq!(fwd("/a/b/..").unwrap(), "/a/");
        assert_eq!(fwd("/a/b/").unwrap(), "/a/b/");
        assert_eq!(fwd("/.").unwrap(), "/");
        assert_eq!(fwd("/a/..").unwrap(), "/");
        assert_eq!(fwd("/.hidden/x").unwrap(), "/.hidden/x");
    }

    #[test]
    fn climbing_above_root_is_refused() {
        assert_eq!(fwd("/.."), Err(PathError::AboveRoot));
        assert_eq!(fwd("/a/../../etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(fwd("/%2e%2e/x"), Err(PathError::AboveRoot));
        assert_eq!(fwd("/%2E./x"), Err(PathError::AboveRoot));
    }

    #[test]
    fn encoded_separators_and_nul_are_refused() {
        assert_eq!(fwd("/rest%2Fapi"), Err(PathError::EncodedSlash));
        assert_eq!(fwd("/rest%2fapi"), Err(PathError::EncodedSlash));
        assert_eq!(fwd("/rest%5Capi"), Err(PathError::Backslash));
        assert_eq!(fwd("/rest\\api"), Err(PathError::Backslash));
        assert_eq!(fwd("/a%00b"), Err(PathError::Nul));
        assert_eq!(fwd("/a%zz"), Err(PathError::Malformed));
        assert_eq!(fwd("/a%2"), Err(PathError::Malformed));
        assert_eq!(fwd("relative"), Err(PathError::Malformed));
    }

    #[test]
    fn unreserved_encodings_are_decoded_and_the_rest_upper_cased() {
        assert_eq!(fwd("/%72est/%61pi").unwrap(), "/rest/api");
        assert_eq!(fwd("/a%20b%3fc").unwrap(), "/a%20b%3Fc");
        assert_eq!(fwd("/%7Euser").unwrap(), "/~user");
    }

    #[test]
    fn parameters_are_removed_and_what_remains_is_forwarded() {
        // The upstream receives the path the route was chosen on, parameters and all gone.
        assert_eq!(fwd("/rest;jsessionid=1/api").unwrap(), "/rest/api");
        assert_eq!(fwd("/rest/api;v=2").unwrap(), "/rest/api");
        // A segment of parameters alone is empty once they go, and merges away (Tomcat reads
        // `/;/rest/admin/x` as `/rest/admin/x`).
        assert_eq!(fwd("/;/rest/admin/x").unwrap(), "/rest/admin/x");
        assert_eq!(fwd("/;x/rest/admin/x").unwrap(), "/rest/admin/x");
        assert_eq!(fwd("/rest/;/admin/x").unwrap(), "/rest/admin/x");
        assert_eq!(fwd("/rest/admin/;x").unwrap(), "/rest/admin/");
        assert_eq!(fwd("/;").unwrap(), "/");
        assert_eq!(
            fwd("/rest/api/..;/admin"),
            Err(PathError::DotSegmentParameter)
        );
        assert_eq!(
            fwd("/rest/api/.;x/admin"),
            Err(PathError::DotSegmentParameter)
        );
    }

    proptest! {
        #[test]
        fn output_is_idempotent_and_never_climbs(p in "(/[a-z.%2Ef;]{0,6}){0,8}") {
            if let Ok(n) = normalize(&p) {
                let again = normalize(&n).unwrap();
                prop_assert_eq!(&again, &n);
                prop_assert!(n.starts_with('/'));
                prop_assert!(!n.split('/').any(|s| s == ".." || s == "."));
                prop_assert!(!n.contains("//") && !n.contains(';'));
            }
        }

        #[test]
        fn never_panics(p in "/\\PC{0,40}") {
            let _ = normalize(&p);
        }
    }
}
