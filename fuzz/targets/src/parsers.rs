//! Target `parsers`: the pure request parsers of `auth_service::http::request` and the field
//! validators the flows apply to what they parse. Every input goes through all of them:
//!
//! - `parse_json` into `serde_json::Value` and into each flow's input type (`LoginInput`,
//!   `SignupInput`, `ProfileUpdate`, `CreateRole`, `UpdateRole`, `Assign`, `Check`). Oracles:
//!   errors are 400 or 422 only; a typed parse never succeeds on a body that is not JSON (apart
//!   from content serde_json does not check in skipped fields); what a typed parse read agrees
//!   with the document (including `UpdateRole`'s absent vs `null` description); a parsed `Value`
//!   survives a serialise/parse round trip.
//! - `parse_form` into `LoginInput` and into pairs, and `parse_query` of the input as a query
//!   string. Oracles: errors are 422 only (400 too for a query); the typed form agrees with the
//!   pairs; `Page::parse` on the `page`/`size` pairs keeps its bounds.
//! - For every parser above: parsing never yields a name holding a control character, nor a
//!   value holding one other than tab, line feed and carriage return (the rule of
//!   `auth_service::http::request`; NUL would reach PostgreSQL, which refuses it).
//! - `cookie_from_header` with the input as the header. Oracles: a found value holds no `;`; a
//!   well-formed cookie appended to the header is found unless the header already names it.
//! - `peer_ip` with the input's lines as `X-Forwarded-For` values, under a proxy
//!   configuration picked by the first byte. Oracles: untrusted peer or untrusted headers give
//!   the peer; otherwise, walking from the right past trusted hops, the first untrusted address
//!   (with or without a port), or the nearest trusted hop when an entry cannot be read, never
//!   an address further left; the answer is never an IPv4-mapped IPv6 address.
//! - `Username`, `Email`, `Password` (the checked values of `auth_service::domain`) and
//!   `Secret::parse`: what they accept keeps the documented shape.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use auth_service::config::HttpConfig;
use auth_service::domain::{Email, Password, PasswordPolicy, Username};
use auth_service::flows::account::{Page, ProfileUpdate};
use auth_service::flows::login::LoginInput;
use auth_service::flows::roles::{Assign, Check, CreateRole, UpdateRole};
use auth_service::flows::signup::SignupInput;
use auth_service::http::ApiError;
use auth_service::http::request::{
    cookie_from_header, parse_form, parse_json, parse_query, peer_ip, refused_in_name, refused_in_value,
};
use auth_service::secret::Secret;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hyper::StatusCode;
use hyper::header::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Runs one input through every parser; panics when an oracle is violated.
pub fn run(data: &[u8]) {
    json(data);
    form(data);
    let text = String::from_utf8_lossy(data);
    cookies(&text);
    forwarded(data);
    fields(&text);
}

fn expect_status<T>(result: &Result<T, ApiError>, allowed: &[StatusCode], what: &str) {
    if let Err(e) = result {
        assert!(allowed.contains(&e.status()), "{what}: unexpected status {} ({e})", e.status());
    }
}

const JSON_ERRORS: &[StatusCode] = &[StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY];

fn typed<T: DeserializeOwned>(data: &[u8], doc: Option<&Value>, what: &str) -> Option<T> {
    let parsed = parse_json::<T>(data);
    expect_status(&parsed, JSON_ERRORS, what);
    if parsed.is_ok() && doc.is_none() && !only_skipped_content_is_invalid(data) {
        panic!("{what} parsed from a body that is not a JSON document");
    }
    parsed.ok()
}

/// serde_json does not fully check the values it skips (fields a type ignores): invalid UTF-8,
/// lone surrogate escapes or numbers out of range there pass a typed parse while a `Value` parse
/// rejects them. Such a body still passes serde_json's syntax-only parse (`IgnoredAny`).
fn only_skipped_content_is_invalid(data: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok()
}

/// Equality of documents, except that floats may differ in their last bit: serde_json's
/// default float parser is not correctly rounded (its `float_roundtrip` feature is), so a
/// long literal can come back one ulp away after a round trip.
fn same_document(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON,
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_document(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_document(v, w)))
        }
        _ => a == b,
    }
}

/// A struct field as the document holds it: by name in an object, by position in an array
/// (serde's derived structs accept both).
fn member<'a>(doc: &'a Value, key: &str, index: usize) -> Option<&'a Value> {
    match doc {
        Value::Object(map) => map.get(key),
        Value::Array(items) => items.get(index),
        _ => None,
    }
}

fn string_member<'a>(doc: &'a Value, key: &str, index: usize) -> Option<&'a str> {
    member(doc, key, index).and_then(Value::as_str)
}

/// The control-character oracle for a parsed document: no name and no string holds one the
/// parsers refuse.
fn no_refused_controls(value: &Value) {
    match value {
        Value::String(s) => assert!(!s.chars().any(refused_in_value), "a parsed JSON string holds a control: {s:?}"),
        Value::Array(items) => items.iter().for_each(no_refused_controls),
        Value::Object(members) => {
            for (name, member) in members {
                assert!(!name.chars().any(refused_in_name), "a parsed JSON name holds a control: {name:?}");
                no_refused_controls(member);
            }
        }
        _ => {}
    }
}

/// The control-character oracle for parsed pairs.
fn no_refused_control_pairs(pairs: &[(String, String)], what: &str) {
    for (name, value) in pairs {
        assert!(!name.chars().any(refused_in_name), "{what}: a parsed name holds a control: {name:?}");
        assert!(!value.chars().any(refused_in_value), "{what}: a parsed value holds a control: {value:?}");
    }
}

/// The control-character oracle for the values of a typed parse.
fn no_refused_control_values(values: &[&str], what: &str) {
    for value in values {
        assert!(!value.chars().any(refused_in_value), "{what}: a parsed value holds a control: {value:?}");
    }
}

fn json(data: &[u8]) {
    let doc = parse_json::<Value>(data);
    expect_status(&doc, JSON_ERRORS, "parse_json::<Value>");
    let doc = doc.ok();
    if let Some(v) = &doc {
        no_refused_controls(v);
    }
    if let Some(v) = &doc {
        let bytes = serde_json::to_vec(v).expect("a Value serialises");
        let again: Value = parse_json(&bytes).unwrap_or_else(|e| panic!("re-serialised JSON does not parse: {e}"));
        assert!(same_document(&again, v), "JSON round trip changed the document: {v} became {again}");
    }
    let Some(d) = doc.as_ref() else {
        // Not a JSON document: no typed parse may succeed.
        typed::<LoginInput>(data, None, "LoginInput");
        typed::<SignupInput>(data, None, "SignupInput");
        typed::<ProfileUpdate>(data, None, "ProfileUpdate");
        typed::<CreateRole>(data, None, "CreateRole");
        typed::<UpdateRole>(data, None, "UpdateRole");
        typed::<Assign>(data, None, "Assign");
        typed::<Check>(data, None, "Check");
        return;
    };
    let doc = Some(d);

    if let Some(login) = typed::<LoginInput>(data, doc, "LoginInput") {
        no_refused_control_values(&[&login.username, &login.password], "LoginInput");
        assert_eq!(string_member(d, "username", 0), Some(login.username.as_str()), "LoginInput.username");
        assert_eq!(string_member(d, "password", 1), Some(login.password.as_str()), "LoginInput.password");
    }
    if let Some(signup) = typed::<SignupInput>(data, doc, "SignupInput") {
        assert_eq!(string_member(d, "username", 0), Some(signup.username.as_str()), "SignupInput.username");
        let email = string_member(d, "email", 1).map(str::trim);
        assert_eq!(email, Some(signup.email.as_str()), "SignupInput.email");
        assert_eq!(string_member(d, "password", 2), Some(signup.password.as_str()), "SignupInput.password");
        fields(signup.username.as_str());
        fields(signup.email.as_str());
    }
    if let Some(update) = typed::<ProfileUpdate>(data, doc, "ProfileUpdate") {
        if let Some(map) = d.as_object() {
            for k in map.keys() {
                assert!(
                    ["username", "old_password", "new_password"].contains(&k.as_str()),
                    "ProfileUpdate denies unknown fields but accepted {k:?}"
                );
            }
        }
        let username = update.username.as_ref().map(Username::as_str);
        assert_eq!(username, string_member(d, "username", 0), "ProfileUpdate.username");
    }
    if let Some(role) = typed::<CreateRole>(data, doc, "CreateRole") {
        assert_eq!(string_member(d, "name", 0), Some(role.name.into_inner().as_str()), "CreateRole.name");
    }
    if let Some(update) = typed::<UpdateRole>(data, doc, "UpdateRole") {
        let expected = match member(d, "description", 1) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(v) => Some(Some(v.as_str().expect("description is a string").to_string())),
        };
        let got = update.description.map(|d| d.map(|d| d.into_inner()));
        assert_eq!(got, expected, "UpdateRole: absent, null and value descriptions mixed up");
    }
    if let Some(assign) = typed::<Assign>(data, doc, "Assign") {
        let user_id = string_member(d, "user_id", 0).and_then(|s| s.parse::<uuid::Uuid>().ok());
        assert_eq!(user_id, Some(assign.user_id), "Assign.user_id");
    }
    if let Some(check) = typed::<Check>(data, doc, "Check") {
        assert_eq!(string_member(d, "role_name", 1), Some(check.role_name.as_str()), "Check.role_name");
    }
}

fn form(data: &[u8]) {
    const FORM_ERRORS: &[StatusCode] = &[StatusCode::UNPROCESSABLE_ENTITY];
    let pairs = parse_form::<Vec<(String, String)>>(data);
    expect_status(&pairs, FORM_ERRORS, "parse_form::<Vec<(String, String)>>");
    if let Ok(pairs) = &pairs {
        no_refused_control_pairs(pairs, "parse_form");
    }
    let query = parse_query(&String::from_utf8_lossy(data));
    expect_status(&query, &[StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY], "parse_query");
    if let Ok(query) = &query {
        no_refused_control_pairs(query, "parse_query");
    }
    let login = parse_form::<LoginInput>(data);
    expect_status(&login, FORM_ERRORS, "parse_form::<LoginInput>");
    if let Ok(login) = &login {
        no_refused_control_values(&[&login.username, &login.password], "parse_form::<LoginInput>");
    }
    if let Ok(login) = &login {
        let pairs = pairs.as_ref().expect("a form that parses as LoginInput parses as pairs");
        let usernames: Vec<&str> = pairs.iter().filter(|(k, _)| k == "username").map(|(_, v)| v.as_str()).collect();
        assert_eq!(usernames, [login.username.as_str()], "LoginInput.username disagrees with the pairs");
    }
    if let Ok(pairs) = pairs {
        let find = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        if let Ok(page) = Page::parse(find("page"), find("size"), 50) {
            assert!(page.page >= 1 && (1..=100).contains(&page.size), "Page out of bounds: {page:?}");
            assert!(page.offset() >= 0, "negative offset for {page:?}");
        }
    }
}

fn cookies(text: &str) {
    for name in ["refresh_token", "a", ""] {
        if let Some(v) = cookie_from_header(text, name) {
            assert!(!v.contains(';'), "cookie value holds a separator: {v:?}");
        }
    }
    let named_before =
        text.split(';').any(|pair| pair.trim().split_once('=').is_some_and(|(k, _)| k == "refresh_token"));
    let value: String =
        text.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(64).collect();
    let header = format!("{text}; refresh_token={value}");
    let found = cookie_from_header(&header, "refresh_token");
    if !named_before {
        assert_eq!(found.as_deref(), Some(value.as_str()), "appended cookie not found in {header:?}");
    }
}

const PEERS: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0005)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
];

fn proxies(choice: u8) -> Vec<IpNet> {
    let nets: &[&str] = match choice % 4 {
        0 => &[],
        1 => &["10.0.0.0/8", "127.0.0.1/32", "::1/128"],
        2 => &["0.0.0.0/0", "::/0"],
        _ => &["10.0.0.0/8", "2001:db8::/32", "fd00::/8"],
    };
    nets.iter().map(|n| n.parse().expect("valid CIDR")).collect()
}

fn http_config(trust: bool, trusted_proxies: Vec<IpNet>) -> HttpConfig {
    HttpConfig {
        bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_bind_addr: None,
        max_body_bytes: 64 * 1024,
        header_read_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        max_connections: 1024,
        shutdown_delay: Duration::ZERO,
        shutdown_grace: Duration::from_secs(5),
        cookie_secure: false,
        allowed_origins: Vec::new(),
        trust_proxy_headers: trust,
        trusted_proxies,
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// An `X-Forwarded-For` entry as a reader of the header takes it: `ip`, `ip:port`, `[v6]` or
/// `[v6]:port`; `None` when it cannot be read.
fn hop(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse::<Ipv6Addr>().ok().map(IpAddr::V6))?;
    Some(canonical(ip))
}

fn forwarded(data: &[u8]) {
    let first = data.first().copied().unwrap_or(0);
    let http = http_config(first & 1 == 1, proxies(first >> 4));
    let peer = PEERS[usize::from(first >> 1) % PEERS.len()];
    let mut headers = HeaderMap::new();
    // Every entry, left to right; a header line that is not text is one unreadable entry.
    let mut entries: Vec<Option<IpAddr>> = Vec::new();
    for line in data.get(1..).unwrap_or_default().split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            match value.to_str() {
                Ok(s) => entries.extend(s.split(',').map(|e| hop(e.trim()))),
                Err(_) => entries.push(None),
            }
            headers.append("x-forwarded-for", value);
        }
    }
    let ip = peer_ip(peer, &headers, &http);
    let trusted = |ip: IpAddr| http.trusted_proxies.iter().any(|n| n.contains(&ip));
    let peer = canonical(peer);
    assert!(
        !matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()),
        "peer_ip returned an IPv4-mapped address: {ip}"
    );
    if !http.trust_proxy_headers || !trusted(peer) {
        assert_eq!(ip, peer, "forwarded headers used without a trusted proxy in front");
        return;
    }
    // From the right, past trusted hops only: the first untrusted address is the client; an
    // unreadable entry (or the end) leaves the nearest trusted hop, never anything further left.
    let mut nearest = peer;
    let mut client = None;
    for entry in entries.iter().rev() {
        match entry {
            Some(a) if trusted(*a) => nearest = *a,
            Some(a) => {
                client = Some(*a);
                break;
            }
            None => break,
        }
    }
    assert_eq!(ip, client.unwrap_or(nearest), "peer_ip walked the header wrongly: {entries:?}");
}

fn fields(text: &str) {
    if Username::parse(text).is_ok() {
        assert!((3..=64).contains(&text.len()), "username length {} accepted", text.len());
        assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')));
    }
    if let Ok(email) = Email::parse(text) {
        let email = email.as_str();
        assert!(email.len() <= 254 && email.matches('@').count() == 1, "email {email:?} accepted");
        assert!(!email.chars().any(char::is_whitespace), "email with whitespace accepted: {email:?}");
        assert_eq!(email, text.trim(), "an email is the text without its surrounding whitespace");
    }
    let policy = PasswordPolicy { min_length: 8, max_length: 128, blocklist: true };
    if Password::new(policy, text.to_string(), "fuzz_user", "fuzz@example.com").is_ok() {
        assert!((8..=128).contains(&text.chars().count()), "password length {} accepted", text.chars().count());
        assert!(!auth_service::passwords::blocklist::is_listed(text), "a listed password accepted");
    }
    if let Some(secret) = Secret::parse(text) {
        assert_eq!(B64.encode(secret.bytes()), text.trim(), "non-canonical secret accepted");
        assert_eq!(secret.encode(), text.trim(), "a secret does not encode as it was sent");
    }
}
