//! Target `router`: `auth_service::routes::table::find` on arbitrary methods and paths.
//!
//! The first byte picks the method (`G`ET, `P`OST, p`U`T, p`A`TCH, `D`ELETE, `H`EAD,
//! `O`PTIONS, `T`RACE, `C`ONNECT; `X` takes an extension method from the input up to the first
//! `/`; anything else is GET); the rest is the path. Oracles, against the route table itself:
//! - `Ok(route, params)`: the route's method is the request's (HEAD served by GET), its template
//!   matches the path segment by segment, and `params` are the path's values of the template's
//!   `{placeholders}`, in order;
//! - `Err(405)`: some route's template matches the path, none under this method, and the
//!   `Allow` list is exactly the matching routes' methods (plus HEAD where GET is allowed); a
//!   router that lets a literal route shadow templates (`/api/v1/users/signup` against
//!   `/api/v1/users/{user_id}`) may instead answer from the literal routes alone;
//! - `Err(404)`: no route's template matches the path;
//! - nothing else, and no panic.

use std::collections::BTreeSet;

use auth_service::http::ApiError;
use auth_service::routes::table::{self as router, ROUTES, RouteDef};
use hyper::Method;

/// The method and path an input stands for.
pub fn decode(data: &[u8]) -> (Method, String) {
    let rest = String::from_utf8_lossy(data.get(1..).unwrap_or_default()).into_owned();
    let method = match data.first() {
        Some(b'G') | None => Method::GET,
        Some(b'P') => Method::POST,
        Some(b'U') => Method::PUT,
        Some(b'A') => Method::PATCH,
        Some(b'D') => Method::DELETE,
        Some(b'H') => Method::HEAD,
        Some(b'O') => Method::OPTIONS,
        Some(b'T') => Method::TRACE,
        Some(b'C') => Method::CONNECT,
        Some(b'X') => {
            let (name, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            return (Method::from_bytes(name.as_bytes()).unwrap_or(Method::GET), path.to_string());
        }
        Some(_) => Method::GET,
    };
    (method, rest)
}

/// The placeholder values of `template` in `path`, if the template matches it segment-wise.
fn matches(template: &str, path: &str) -> Option<Vec<String>> {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut params = Vec::new();
    for (ts, ps) in t.iter().zip(&p) {
        if ts.len() >= 2 && ts.starts_with('{') && ts.ends_with('}') {
            if ps.is_empty() {
                return None;
            }
            params.push((*ps).to_string());
        } else if ts != ps {
            return None;
        }
    }
    Some(params)
}

/// The `Allow` list for `routes`: their methods, and HEAD wherever GET is allowed.
fn allow_set(routes: &[&RouteDef]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for r in routes {
        set.insert(r.method.as_str().to_string());
        if r.method == Method::GET {
            set.insert("HEAD".to_string());
        }
    }
    set
}

/// Runs one input; panics when an oracle is violated.
pub fn run(data: &[u8]) {
    let (method, path) = decode(data);
    let effective = if method == Method::HEAD { Method::GET } else { method.clone() };
    let matching: Vec<_> = ROUTES.iter().filter(|r| matches(r.template, &path).is_some()).collect();
    match router::find(&method, &path) {
        Ok((route, params)) => {
            assert_eq!(route.method, effective, "{method} {path:?} routed to {} {}", route.method, route.template);
            let expected = matches(route.template, &path)
                .unwrap_or_else(|| panic!("{method} {path:?} routed to {}, which does not match it", route.template));
            assert_eq!(params, expected, "{method} {path:?}: wrong placeholder values for {}", route.template);
        }
        Err(ApiError::MethodNotAllowed(allow)) => {
            assert!(!matching.is_empty(), "{method} {path:?}: 405 for a path no route matches");
            let got: BTreeSet<String> = allow.split(", ").map(str::to_string).collect();
            // Two readings are accepted: every template that matches the path counts, or a path
            // that is a literal route's template is answered by the literal routes alone.
            let literal: Vec<_> = matching.iter().copied().filter(|r| r.template == path).collect();
            let consistent = |routes: &[&RouteDef]| {
                !routes.is_empty() && routes.iter().all(|r| r.method != effective) && got == allow_set(routes)
            };
            assert!(
                consistent(&matching) || consistent(&literal),
                "{method} {path:?}: 405 with Allow {allow:?}, but the matching routes are {:?}",
                matching.iter().map(|r| format!("{} {}", r.method, r.template)).collect::<Vec<_>>()
            );
        }
        Err(ApiError::NotFound(_)) => {
            assert!(
                matching.is_empty(),
                "{method} {path:?}: 404 although {} {} matches",
                matching[0].method,
                matching[0].template
            );
        }
        Err(other) => panic!("{method} {path:?}: unexpected router error {other:?}"),
    }
}
