//! Every rule about a URI that a client registers or sends: redirect URIs and post-logout
//! redirect URIs. Registration and the authorization endpoint both ask this module, so that
//! they cannot disagree.
//!
//! A URI is parsed as browsers parse it (the WHATWG URL standard, the `url` crate), so the host
//! checked here is the host a browser is sent to. A hand-rolled split does not agree with a
//! browser: `http://evil.example\@127.0.0.1/cb` has the host `127.0.0.1` after its `@`, but a
//! browser reads `\` as `/` and goes to `evil.example`. On top of the parse, the raw text may hold
//! no backslash, whitespace or control character, no user name or password (`user@host`), no
//! fragment and no wildcard, so that the stored string and what a browser makes of it are the
//! same URI.
//!
//! - **Redirect URIs** (OAuth 2.1 §2.3.1, RFC 8252): `https` with a host; `http` only on a
//!   loopback host, decided on the parsed host (127.0.0.0/8, `[::1]`, `localhost`); or a
//!   private-use scheme that names its owner's domain reversed (`com.example.app:/cb`).
//!   A request's URI must equal a registered one exactly, except that a loopback `http` URI
//!   matches on any port (RFC 8252 §7.3, OAuth 2.1 §8.4.2: a native app listens on whatever port
//!   the system gives it); scheme, host, path and query still match exactly.

use url::{Host, Url};

/// The longest URI accepted.
pub const MAX_LEN: usize = 2000;

/// Why a URI is refused; the text completes "URI … ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("contains a backslash, whitespace or a control character")]
    BadCharacter,
    #[error("is not an absolute URI")]
    NotAbsolute,
    #[error("carries a user name or password (user@host)")]
    UserInfo,
    #[error("has a fragment")]
    Fragment,
    #[error("has a wildcard")]
    Wildcard,
    #[error("has no host")]
    NoHost,
    #[error("must be https (http only on a loopback host: 127.0.0.0/8, [::1], localhost)")]
    RedirectScheme,
    #[error("needs a private-use scheme that names its owner's domain, reversed (com.example.app:/cb)")]
    PrivateUseScheme,
}

/// The checks every URI here passes: the raw text, then the WHATWG parse.
fn parse(raw: &str) -> Result<Url, UriError> {
    if raw.len() > MAX_LEN {
        return Err(UriError::TooLong);
    }
    if raw.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control()) {
        return Err(UriError::BadCharacter);
    }
    if raw.contains('#') {
        return Err(UriError::Fragment);
    }
    if raw.contains('*') {
        return Err(UriError::Wildcard);
    }
    let url = Url::parse(raw).map_err(|_| UriError::NotAbsolute)?;
    // The authority as written: an `@` in it is userinfo, even an empty one (`http://@host/`),
    // which the parse does not report.
    let authority = raw.split_once("://").map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(rest));
    if !url.username().is_empty() || url.password().is_some() || authority.is_some_and(|a| a.contains('@')) {
        return Err(UriError::UserInfo);
    }
    Ok(url)
}

/// Whether the parsed host is a loopback one: 127.0.0.0/8, `[::1]` (or the IPv4-mapped form of a
/// 127 address) or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Some(Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

/// A redirect URI (or post-logout redirect URI) a client may register; see the module docs.
pub fn redirect_uri(raw: &str) -> Result<Url, UriError> {
    let url = parse(raw)?;
    match url.scheme() {
        "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        "https" => Err(UriError::NoHost),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(UriError::RedirectScheme),
        // A private-use scheme names its owner's domain, reversed, so it contains a dot; the
        // other special schemes (`ws`, `ftp`, `file`) and `javascript:` or `data:` do not.
        other if other.contains('.') => Ok(url),
        _ => Err(UriError::PrivateUseScheme),
    }
}

/// The raw URI without the port of its authority (`http://127.0.0.1:8080/cb` →
/// `http://127.0.0.1/cb`), for a loopback match that ignores only the port.
fn without_port(raw: &str) -> Option<String> {
    let (scheme, rest) = raw.split_once("://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.strip_prefix('[') {
        Some(v6) => &authority[..v6.find(']')? + 2],
        None => authority.split(':').next()?,
    };
    Some(format!("{scheme}://{host}{tail}"))
}

/// Whether a request's `redirect_uri` matches a registered one: the same string, or, for a
/// loopback `http` URI, the same string but for the port (RFC 8252 §7.3).
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let loopback = |raw: &str| redirect_uri(raw).is_ok_and(|u| u.scheme() == "http" && is_loopback(&u));
    loopback(registered)
        && loopback(requested)
        && without_port(registered).is_some_and(|r| without_port(requested).is_some_and(|q| r == q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_judged_on_the_host_a_browser_would_visit() {
        for good in [
            "https://app.example.com/cb",
            "https://app.example.com/cb?x=1",
            "http://127.0.0.1:8080/cb",
            "http://127.1.2.3/cb",
            "http://[::1]/cb",
            "http://localhost:3000/cb",
            "com.example.app:/cb",
        ] {
            assert!(redirect_uri(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("http://evil.example\\@127.0.0.1/cb", UriError::BadCharacter),
            ("https://evil.example\\@app.example/cb", UriError::BadCharacter),
            ("http://evil.example@127.0.0.1/cb", UriError::UserInfo),
            ("https://user:pw@app.example/cb", UriError::UserInfo),
            ("http://@127.0.0.1/cb", UriError::UserInfo),
            ("https://app.example/cb#x", UriError::Fragment),
            ("https://app.example/cb#", UriError::Fragment),
            ("https://*.example.com/cb", UriError::Wildcard),
            ("http://app.example.com/cb", UriError::RedirectScheme),
            ("http://127.0.0.1.evil.example/cb", UriError::RedirectScheme),
            ("http://localhost.evil.example/cb", UriError::RedirectScheme),
            ("http://0x7f.evil/cb", UriError::RedirectScheme),
            ("/cb", UriError::NotAbsolute),
            ("app:/cb", UriError::PrivateUseScheme),
            ("javascript:alert(1)", UriError::PrivateUseScheme),
            ("https://app.example/c b", UriError::BadCharacter),
            ("https://app.example/c\tb", UriError::BadCharacter),
        ] {
            assert_eq!(redirect_uri(bad).err(), Some(why), "{bad}");
        }
        // The WHATWG parse reads these hosts as 127.0.0.1, as a browser does.
        assert!(redirect_uri("http://2130706433/cb").is_ok());
        assert!(redirect_uri("http://0x7f.1/cb").is_ok());
    }

    #[test]
    fn a_loopback_redirect_uri_matches_on_any_port_and_nothing_else_loosens() {
        assert!(redirect_matches("http://127.0.0.1/cb", "http://127.0.0.1:53123/cb"));
        assert!(redirect_matches("http://127.0.0.1:8080/cb", "http://127.0.0.1:53123/cb"));
        assert!(redirect_matches("http://127.0.0.1:8080/cb", "http://127.0.0.1/cb"));
        assert!(redirect_matches("http://[::1]:1/cb?a=1", "http://[::1]:2/cb?a=1"));
        assert!(redirect_matches("http://localhost/cb", "http://localhost:9/cb"));
        for (registered, requested) in [
            ("http://127.0.0.1/cb", "http://127.0.0.1:53123/cb2"),
            ("http://127.0.0.1/cb", "http://127.0.0.2:53123/cb"),
            ("http://127.0.0.1/cb", "http://localhost:53123/cb"),
            ("http://127.0.0.1/cb", "http://127.0.0.1:53123/cb?x=1"),
            ("http://127.0.0.1/cb", "http://127.0.0.1:53123/CB"),
            ("http://127.0.0.1/cb", "http://evil.example\\@127.0.0.1:1/cb"),
            ("http://127.0.0.1/cb", "http://x@127.0.0.1:1/cb"),
            ("https://app.example/cb", "https://app.example:8443/cb"),
            ("https://127.0.0.1/cb", "https://127.0.0.1:8443/cb"),
        ] {
            assert!(!redirect_matches(registered, requested), "{registered} ~ {requested}");
        }
    }
}
