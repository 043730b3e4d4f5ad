//! Every rule about a URI that a client registers or sends: redirect URIs, post-logout redirect
//! URIs and `jwks_uri`. Registration, the authorization endpoint and the key fetcher all ask
//! this module, so that they cannot disagree.
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
//! - **`jwks_uri`**: `https` (or `http` with `CLIENT_JWKS_ALLOW_HTTP`), and its host must be a
//!   public address, at registration and at every fetch ([`is_public`]; development may allow
//!   private targets with `CLIENT_JWKS_ALLOW_PRIVATE`). A name is resolved at registration; at a
//!   fetch the resolver keeps only public addresses and the fetcher connects to those, so a name
//!   that resolves elsewhere later (DNS rebinding) reaches nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    #[error("must be https")]
    JwksScheme,
    #[error("must be http or https")]
    JwksSchemeHttp,
    #[error("points at {0}, which is not a public address")]
    NotPublic(IpAddr),
    #[error("names a local host ({0})")]
    LocalName(String),
    #[error("has a host that does not resolve ({0})")]
    Unresolved(String),
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

/// A `jwks_uri` by its shape: `https` (or `http` when `allow_http`) with a host. Where it points
/// is checked by [`check_target`] at registration and by the fetcher's resolver at every fetch.
pub fn jwks_uri(raw: &str, allow_http: bool) -> Result<Url, UriError> {
    let url = parse(raw)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ if allow_http => return Err(UriError::JwksSchemeHttp),
        _ => return Err(UriError::JwksScheme),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UriError::NoHost);
    }
    Ok(url)
}

/// Where a parsed URI points before any lookup: an address, a local name, or a name to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Address(IpAddr),
    /// `localhost` or a name under it (RFC 6761 §6.3: always loopback, never asked of DNS).
    Local(String),
    Name(String),
}

pub fn target(url: &Url) -> Option<Target> {
    Some(match url.host()? {
        Host::Ipv4(ip) => Target::Address(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Target::Address(IpAddr::V6(ip)),
        Host::Domain(name) if name == "localhost" || name.ends_with(".localhost") => Target::Local(name.to_string()),
        Host::Domain(name) => Target::Name(name.to_string()),
    })
}

/// The target of a `jwks_uri` at registration: a literal address must be public, a name must
/// resolve, to public addresses only (`allow_private`: anything goes, for development).
pub async fn check_target(url: &Url, allow_private: bool) -> Result<(), UriError> {
    if allow_private {
        return Ok(());
    }
    match target(url).ok_or(UriError::NoHost)? {
        Target::Address(ip) if is_public(ip) => Ok(()),
        Target::Address(ip) => Err(UriError::NotPublic(ip)),
        Target::Local(name) => Err(UriError::LocalName(name)),
        Target::Name(name) => {
            let port = url.port_or_known_default().unwrap_or(443);
            let unresolved = || UriError::Unresolved(name.clone());
            let addrs: Vec<IpAddr> = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|_| unresolved())?
                .map(|a| a.ip())
                .collect();
            if addrs.is_empty() {
                return Err(unresolved());
            }
            match addrs.into_iter().find(|ip| !is_public(*ip)) {
                Some(ip) => Err(UriError::NotPublic(ip)),
                None => Ok(()),
            }
        }
    }
}

/// IPv4 ranges that are not public destinations (RFC 6890 and its updates).
const NON_PUBLIC_V4: &[(Ipv4Addr, u32)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network", the unspecified address
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // shared address space (CGNAT)
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local (cloud metadata services)
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation (TEST-NET-1)
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation (TEST-NET-2)
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation (TEST-NET-3)
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, and the broadcast address
];

/// IPv6 ranges that are not public destinations. IPv4-mapped, NAT64 and 6to4 addresses are
/// judged by the IPv4 address they carry, before this table.
const NON_PUBLIC_V6: &[(Ipv6Addr, u32)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96), // unspecified, loopback, IPv4-compatible
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments (Teredo, ...)
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site-local (deprecated)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

fn public_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !NON_PUBLIC_V4.iter().any(|(net, len)| bits >> (32 - len) == u32::from(*net) >> (32 - len))
}

/// Whether `ip` is a public destination: not loopback, private, link-local, unique-local,
/// unspecified, CGNAT, multicast, broadcast, documentation or otherwise reserved, nor an IPv6
/// form of such an IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let carried = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return public_v4(carried(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return public_v4(carried(s[1], s[2]));
            }
            let bits = u128::from(v6);
            !NON_PUBLIC_V6.iter().any(|(net, len)| bits >> (128 - len) == u128::from(*net) >> (128 - len))
        }
    }
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

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "127.255.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
    }

    #[tokio::test]
    async fn a_jwks_uri_must_be_https_and_point_at_a_public_address() {
        for uri in ["https://127.0.0.1/k", "https://169.254.169.254/k", "https://10.0.0.1/k", "https://[::1]/k"] {
            let url = jwks_uri(uri, false).expect("shape");
            assert!(matches!(check_target(&url, false).await, Err(UriError::NotPublic(_))), "{uri}");
            assert!(check_target(&url, true).await.is_ok(), "{uri} allowed for development");
        }
        let local = jwks_uri("https://localhost/k", false).expect("shape");
        assert!(matches!(check_target(&local, false).await, Err(UriError::LocalName(_))));
        let public = jwks_uri("https://93.184.215.14/k", false).expect("shape");
        assert!(check_target(&public, false).await.is_ok());
        assert_eq!(jwks_uri("http://keys.example/k", false).err(), Some(UriError::JwksScheme));
        assert!(jwks_uri("http://keys.example/k", true).is_ok());
        assert_eq!(jwks_uri("https://a.example\\@b.example/k", false).err(), Some(UriError::BadCharacter));
        assert_eq!(jwks_uri("https://u@keys.example/k", false).err(), Some(UriError::UserInfo));
    }
}
