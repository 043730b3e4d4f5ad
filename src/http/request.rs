//! What a handler knows about a request: its id, the client's address, the matched route, the
//! headers, and helpers that read the body under the size and time limits and parse it.
//!
//! Every form, query string and JSON body is parsed here, and here alone control characters
//! are refused (422), in every value and every name: NUL (which PostgreSQL cannot store in
//! text, so it would otherwise reach the database and fail there) and the other C0 controls and
//! DEL. Tab, line feed and carriage return are allowed in values, where free text (a role's
//! description) may hold them; every value with a narrower shape (names, URIs, scopes, tokens)
//! has its own check that refuses them. Names hold no control character at all.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::Method;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HeaderMap};
use ipnet::IpNet;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::config::HttpConfig;

/// The parts of a request a handler needs, with the body still unread.
pub struct Request {
    pub id: String,
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub peer_ip: IpAddr,
    /// Values of `{param}` segments of the matched route template, in order.
    pub params: Vec<String>,
    body: Option<Incoming>,
    max_body: usize,
    body_timeout: Duration,
}

impl Request {
    pub fn new(req: hyper::Request<Incoming>, id: String, peer: SocketAddr, http: &HttpConfig) -> Request {
        let (parts, body) = req.into_parts();
        let peer_ip = peer_ip(peer.ip(), &parts.headers, http);
        Request {
            id,
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            peer_ip,
            params: Vec::new(),
            body: Some(body),
            max_body: http.max_body_bytes,
            body_timeout: http.request_timeout,
        }
    }

    pub fn header(&self, name: impl hyper::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn user_agent(&self) -> Option<String> {
        self.header(hyper::header::USER_AGENT).map(|s| s.chars().take(512).collect())
    }

    /// Who is calling, as far as the network tells (for history, events and limits).
    pub fn peer(&self) -> crate::domain::Peer {
        crate::domain::Peer { ip: self.peer_ip, user_agent: self.user_agent() }
    }

    /// The Bearer token of the Authorization header, if any.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header(AUTHORIZATION)?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
    }

    /// The value of cookie `name`, if present.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| cookie_from_header(v, name))
    }

    /// Every query-string parameter, percent-decoded, in order (a malformed query is 400, a
    /// control character 422).
    pub fn query_pairs(&self) -> Result<Vec<(String, String)>, ApiError> {
        self.query.as_deref().map_or(Ok(Vec::new()), parse_query)
    }

    /// A query-string parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Result<Option<String>, ApiError> {
        Ok(self.query_pairs()?.into_iter().find(|(k, _)| k == name).map(|(_, v)| v))
    }

    /// Whether the request declares no body at all (no `Content-Type`, and no length or a zero
    /// one): an optional JSON body may then be left out.
    pub fn body_is_empty(&self) -> bool {
        self.header(CONTENT_TYPE).is_none() && self.header(CONTENT_LENGTH).is_none_or(|l| l.trim() == "0")
    }

    /// Reads the whole body, refusing more than the configured maximum (413) and bodies that
    /// do not finish within the request timeout (408).
    pub async fn body(&mut self) -> Result<Bytes, ApiError> {
        let declared = self.header(CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(ApiError::PayloadTooLarge(self.max_body));
        }
        let Some(body) = self.body.take() else { return Ok(Bytes::new()) };
        let read = Limited::new(body, self.max_body).collect();
        match tokio::time::timeout(self.body_timeout, read).await {
            Err(_) => Err(ApiError::RequestTimeout),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge(self.max_body)),
            Ok(Err(_)) => Err(ApiError::BadRequest("request body could not be read".into())),
        }
    }

    fn media_type(&self) -> Option<String> {
        self.header(CONTENT_TYPE).map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
    }

    /// Parses a JSON body (`Content-Type: application/json` required: 415 otherwise).
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        match self.media_type().as_deref() {
            Some("application/json") => {}
            Some(other) if other.ends_with("+json") => {}
            _ => return Err(ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())),
        }
        let body = self.body().await?;
        parse_json(&body)
    }

    /// Parses an `application/x-www-form-urlencoded` body (415 for any other type).
    pub async fn form<T: DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        if self.media_type().as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/x-www-form-urlencoded".into(),
            ));
        }
        let body = self.body().await?;
        parse_form(&body)
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request must carry exactly one `Host`, and no HTTP/1.x request
/// may carry two or one that is not a host with an optional port (empty is allowed: a target
/// without an authority). Otherwise the request is 400, before it is routed: which host was
/// meant is ambiguous, and a proxy in front may have read another one than we would. HTTP/2
/// names the host in `:authority` (RFC 9113 §8.3.1) and is not held to this.
pub fn check_host<B>(req: &hyper::Request<B>) -> Result<(), ApiError> {
    let version = req.version();
    if version != hyper::Version::HTTP_11 && version != hyper::Version::HTTP_10 {
        return Ok(());
    }
    let mut hosts = req.headers().get_all(hyper::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == hyper::Version::HTTP_11 => {
            Err(ApiError::BadRequest("an HTTP/1.1 request needs a Host header".into()))
        }
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(ApiError::BadRequest("more than one Host header".into())),
        (Some(host), None) if host.is_empty() || is_host_and_port(host.as_bytes()) => Ok(()),
        (Some(_), None) => Err(ApiError::BadRequest("the Host header is not a host name with an optional port".into())),
    }
}

/// `uri-host [":" port]` (RFC 3986): an authority without user information.
fn is_host_and_port(value: &[u8]) -> bool {
    !value.contains(&b'@') && hyper::http::uri::Authority::try_from(value).is_ok()
}

/// The value of cookie `name` in one `Cookie` header value (`a=1; b=2`).
pub fn cookie_from_header(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then(|| v.trim_matches('"').to_string())
    })
}

/// Whether a parsed value may not hold `c`: the C0 controls and DEL, except tab, line feed and
/// carriage return (see the module documentation).
pub fn refused_in_value(c: char) -> bool {
    c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Whether a parameter or member name may not hold `c`: any control character.
pub fn refused_in_name(c: char) -> bool {
    c.is_control()
}

fn control_character(what: &str, name: &str) -> ApiError {
    ApiError::Unprocessable(format!("{what} {name:?} contains a control character"))
}

/// Refuses a form or query whose names or values hold control characters.
fn check_pairs(pairs: &[(String, String)], what: &str) -> Result<(), ApiError> {
    for (name, value) in pairs {
        if name.chars().any(refused_in_name) || value.chars().any(refused_in_value) {
            return Err(control_character(&format!("{what} parameter"), name));
        }
    }
    Ok(())
}

/// Refuses a JSON document with control characters in a member name or a string, at any depth
/// (serde_json bounds the depth, so the recursion is bounded too). `path` names the member.
fn check_json(value: &serde_json::Value, path: &str) -> Result<(), ApiError> {
    match value {
        serde_json::Value::String(s) if s.chars().any(refused_in_value) => Err(control_character("JSON member", path)),
        serde_json::Value::Array(items) => items.iter().try_for_each(|item| check_json(item, path)),
        serde_json::Value::Object(members) => members.iter().try_for_each(|(name, member)| {
            if name.chars().any(refused_in_name) {
                return Err(control_character("JSON member name in", path));
            }
            check_json(member, name)
        }),
        _ => Ok(()),
    }
}

/// JSON syntax errors are 400; a well-formed document with wrong or missing fields, or with a
/// control character in a name or a string, is 422. The syntax is checked on its own first, so
/// a malformed body is 400 even when a field before the error already had the wrong type.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    check_json(&value, "")?;
    serde_json::from_value(value).map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// A query string's parameters, percent-decoded, in order (400 when malformed, 422 when a name
/// or value holds a control character).
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    check_pairs(&pairs, "query")?;
    Ok(pairs)
}

/// A form body (422 when malformed or when a name or value holds a control character). It is
/// decoded into pairs first, checked, then into `T`.
pub fn parse_form<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let invalid = |e: serde_urlencoded::de::Error| ApiError::Unprocessable(format!("invalid form: {e}"));
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(invalid)?;
    check_pairs(&pairs, "form")?;
    serde_urlencoded::from_bytes(body).map_err(invalid)
}

/// The client's address: the socket peer, or, when proxy headers are trusted and the peer is
/// a trusted proxy, the first `X-Forwarded-For` entry from the right that is not itself a
/// trusted proxy. Entries may carry a port (`ip:port`, `[v6]:port`), as several load balancers
/// append them. An entry that cannot be parsed ends the walk: the client is then the nearest
/// trusted hop, never an address further left, which anyone could have written.
pub fn peer_ip(peer: IpAddr, headers: &HeaderMap, http: &HttpConfig) -> IpAddr {
    let peer = canonical(peer);
    let trusted = |ip: IpAddr| http.trusted_proxies.iter().any(|net: &IpNet| net.contains(&ip));
    if !http.trust_proxy_headers || !trusted(peer) {
        return peer;
    }
    let lines: Vec<Option<&str>> = headers.get_all("x-forwarded-for").iter().map(|v| v.to_str().ok()).collect();
    let mut nearest = peer;
    for line in lines.into_iter().rev() {
        let Some(line) = line else { return nearest };
        for entry in line.rsplit(',') {
            match forwarded_hop(entry.trim()) {
                Some(ip) if trusted(ip) => nearest = ip,
                Some(ip) => return ip,
                None => return nearest,
            }
        }
    }
    nearest
}

/// One `X-Forwarded-For` entry: `ip`, `ip:port`, `[v6]` or `[v6]:port`.
fn forwarded_hop(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    let v6 = entry.strip_prefix('[')?.strip_suffix(']')?;
    v6.parse::<std::net::Ipv6Addr>().ok().map(|ip| canonical(IpAddr::V6(ip)))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: hyper::Version, hosts: &[&str]) -> hyper::Request<()> {
        let mut builder = hyper::Request::builder().version(version).uri("/api/v1/healthz");
        for host in hosts {
            builder = builder.header(hyper::header::HOST, *host);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn http_1_1_needs_exactly_one_well_formed_host() {
        let (v10, v11, v2) = (hyper::Version::HTTP_10, hyper::Version::HTTP_11, hyper::Version::HTTP_2);
        assert!(check_host(&request(v11, &["auth.example:8080"])).is_ok());
        assert!(check_host(&request(v11, &["[::1]:8080"])).is_ok());
        assert!(check_host(&request(v11, &[""])).is_ok());
        assert!(matches!(check_host(&request(v11, &[])), Err(ApiError::BadRequest(_))));
        assert!(matches!(check_host(&request(v11, &["a.example", "b.example"])), Err(ApiError::BadRequest(_))));
        assert!(matches!(check_host(&request(v11, &["user@a.example"])), Err(ApiError::BadRequest(_))));
        assert!(matches!(check_host(&request(v11, &["a.example/path"])), Err(ApiError::BadRequest(_))));
        assert!(check_host(&request(v10, &[])).is_ok());
        assert!(matches!(check_host(&request(v10, &["a", "b"])), Err(ApiError::BadRequest(_))));
        assert!(check_host(&request(v2, &[])).is_ok());
    }
}
