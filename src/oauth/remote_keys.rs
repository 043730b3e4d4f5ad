//! Clients' public keys published at a `jwks_uri` (for `private_key_jwt`), fetched and cached.
//!
//! A set is fetched on first use and kept for the `max-age` its answer gives (at least one
//! minute, at most an hour; five minutes without one). A key id the cached set does not hold
//! fetches the set again, at most once every ten seconds per URI, so a client that rotates its
//! key is served at once while a stream of made-up key ids cannot make the service fetch without
//! bound. Fetches are bounded: `DEPENDENCY_TIMEOUT`, 64 KiB, `https` only (unless
//! `CLIENT_JWKS_ALLOW_HTTP`), no redirects.
//!
//! Every fetch goes to a public address only (unless `CLIENT_JWKS_ALLOW_PRIVATE`), whatever the
//! database holds: the URI is checked again by [`crate::uri`] before the request, a literal
//! address must be public, and a name goes through [`PublicResolver`], which drops every
//! address that is not public and fails when none is left. The connector connects only to the
//! addresses the resolver returned, so the address checked is the address connected to: a name
//! that resolves to a public address at registration and to 169.254.169.254 later (DNS
//! rebinding) is refused at that later fetch.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;

const MAX_BODY: usize = 64 * 1024;
const REFETCH_AFTER: Duration = Duration::from_secs(10);
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// Why a client's keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RemoteKeysError {
    #[error("fetching {uri} failed: {reason}")]
    Fetch { uri: String, reason: String },
}

struct Fetched {
    keys: Arc<JwkSet>,
    at: Instant,
    max_age: Duration,
}

/// The fetcher's resolver: the system's, keeping only public addresses (all of them when
/// `allow_private`), an error when none remains. The connector connects to exactly what this
/// returns.
#[derive(Debug, Clone, Copy)]
pub struct PublicResolver {
    allow_private: bool,
}

impl tower_service::Service<Name> for PublicResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str();
            // RFC 6761 §6.3: `localhost` is loopback whatever a resolver says.
            let local = host == "localhost" || host.ends_with(".localhost");
            let resolved = tokio::net::lookup_host((host, 0)).await?;
            let kept: Vec<SocketAddr> =
                resolved.filter(|a| allow_private || (!local && crate::uri::is_public(a.ip()))).collect();
            if kept.is_empty() {
                return Err(std::io::Error::other(format!("{host} resolves to no public address")));
            }
            Ok(kept.into_iter())
        })
    }
}

/// The cache of fetched key sets, by URI.
pub struct RemoteKeys {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector<PublicResolver>>, Empty<Bytes>>,
    timeout: Duration,
    allow_http: bool,
    allow_private: bool,
    sets: Mutex<HashMap<String, Fetched>>,
}

impl RemoteKeys {
    /// `allow_http`, `allow_private`: `CLIENT_JWKS_ALLOW_HTTP`, `CLIENT_JWKS_ALLOW_PRIVATE`.
    pub fn new(timeout: Duration, allow_http: bool, allow_private: bool) -> RemoteKeys {
        let mut http = HttpConnector::new_with_resolver(PublicResolver { allow_private });
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        RemoteKeys { client, timeout, allow_http, allow_private, sets: Mutex::new(HashMap::new()) }
    }

    /// The key set at `uri`, holding `kid` if the publisher has it.
    pub async fn get(&self, uri: &str, kid: Option<&str>) -> Result<Arc<JwkSet>, RemoteKeysError> {
        let cached = {
            let sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
            sets.get(uri).map(|f| (f.keys.clone(), f.at.elapsed(), f.max_age))
        };
        if let Some((keys, age, max_age)) = &cached {
            let has_kid = kid.is_none_or(|kid| keys.keys.iter().any(|k| k.common.key_id.as_deref() == Some(kid)));
            if *age < *max_age && (has_kid || *age < REFETCH_AFTER) {
                return Ok(keys.clone());
            }
        }
        match self.fetch(uri).await {
            Ok((keys, max_age)) => {
                let keys = Arc::new(keys);
                let fetched = Fetched { keys: keys.clone(), at: Instant::now(), max_age };
                let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
                if sets.len() >= 10_000 {
                    sets.clear();
                }
                sets.insert(uri.to_string(), fetched);
                Ok(keys)
            }
            // A publisher that is down does not stop clients whose keys are already known.
            Err(e) => cached.map(|(keys, _, _)| keys).ok_or(e),
        }
    }

    async fn fetch(&self, uri: &str) -> Result<(JwkSet, Duration), RemoteKeysError> {
        let fail = |reason: String| RemoteKeysError::Fetch { uri: uri.to_string(), reason };
        // The stored URI is checked again (it may predate a rule, or have been written around
        // registration), and the request goes to its WHATWG serialisation, so hyper sees the
        // host that was checked. A literal address never reaches the resolver.
        let url = crate::uri::jwks_uri(uri, self.allow_http).map_err(|e| fail(format!("the URI {e}")))?;
        if let Some(crate::uri::Target::Address(ip)) = crate::uri::target(&url)
            && !self.allow_private
            && !crate::uri::is_public(ip)
        {
            return Err(fail(format!("{ip} is not a public address")));
        }
        let request = hyper::Request::get(url.as_str())
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "auth-service")
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let work = async {
            let response = self.client.request(request).await.map_err(|e| fail(e.to_string()))?;
            if !response.status().is_success() {
                return Err(fail(format!("status {}", response.status())));
            }
            let max_age = max_age(response.headers());
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            let keys: JwkSet = serde_json::from_slice(&body).map_err(|e| fail(format!("not a JWK Set: {e}")))?;
            Ok((keys, max_age))
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| fail("timed out".into()))?
    }
}

/// The `max-age` of `Cache-Control`, clamped to one minute .. one hour.
fn max_age(headers: &hyper::HeaderMap) -> Duration {
    let seconds = headers
        .get(hyper::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|d| d.trim().strip_prefix("max-age=")?.parse::<u64>().ok()));
    seconds.map_or(DEFAULT_MAX_AGE, |s| Duration::from_secs(s.clamp(60, 3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_and_clamped() {
        let mut h = hyper::HeaderMap::new();
        assert_eq!(max_age(&h), DEFAULT_MAX_AGE);
        h.insert(hyper::header::CACHE_CONTROL, "public, max-age=5".parse().expect("header"));
        assert_eq!(max_age(&h), Duration::from_secs(60));
        h.insert(hyper::header::CACHE_CONTROL, "max-age=600".parse().expect("header"));
        assert_eq!(max_age(&h), Duration::from_secs(600));
    }
}
