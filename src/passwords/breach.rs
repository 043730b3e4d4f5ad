//! The k-anonymity range API (`PWNED_PASSWORDS_URL`, the Pwned Passwords protocol): whether a
//! new password is known from a breach, asked without ever sending it.
//!
//! The request is `GET {url}{P}` where `P` is the first five hex digits (upper case) of the
//! password's SHA-1; the answer lists, one `SUFFIX:COUNT` per line, the remaining 35 hex digits
//! of every known hash that starts with `P`. The password is known when its own suffix is
//! listed with a count above zero. Only the prefix leaves the service: one of a million
//! buckets, each shared by hundreds of known hashes, so the API learns nothing it could tell
//! the password by. `Add-Padding: true` asks for padded answers (random suffixes with count 0,
//! which never match), so an observer cannot tell the bucket by the answer's size either.
//!
//! A request is bounded by `PWNED_PASSWORDS_TIMEOUT` (connect, answer and body together) and by
//! [`MAX_BODY`]. When the API cannot answer (unreachable, timeout, a status other than 200, a
//! body too large or not text) the password is accepted, or refused with 503 when
//! `PWNED_PASSWORDS_FAIL_CLOSED`; either way a warning is logged (without the password, its
//! hash or the prefix) and the check counted as `error`.
//!
//! The bundled list ([`super::blocklist`]) is consulted first, in `Password::new`; this check
//! is asynchronous, so the flows that set a password call [`check`] themselves.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::BreachApiConfig;
use crate::domain::{BREACHED_PASSWORD, FieldError, Password};
use crate::flows::error::{Dependency, FlowError};
use crate::metrics::{CheckOutcome, CheckSource, Metrics, PasswordCheckLabels, password_checks};

/// The largest answer read. A padded answer holds 800–1 000 lines of 40 bytes or so.
pub const MAX_BODY: usize = 256 * 1024;

/// The client of the range API, made once at start-up when `PWNED_PASSWORDS_URL` is set.
pub struct RangeApi {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    url: String,
    timeout: Duration,
    fail_closed: bool,
}

impl RangeApi {
    pub fn new(config: &BreachApiConfig) -> RangeApi {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        RangeApi {
            client: Client::builder(TokioExecutor::new()).build(https),
            url: config.url.clone(),
            timeout: config.timeout,
            fail_closed: config.fail_closed,
        }
    }

    /// Whether the API knows `password`; `Err` says why it could not tell.
    async fn is_known(&self, password: &str) -> Result<bool, String> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
        let hex = upper_hex(digest.as_ref());
        let (prefix, suffix) = hex.split_at(5);
        let request = hyper::Request::get(format!("{}{prefix}", self.url))
            .header("Add-Padding", "true")
            .header(hyper::header::USER_AGENT, "auth-service")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("the request could not be made: {e}"))?;
        let work = async {
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            if response.status() != hyper::StatusCode::OK {
                return Err(format!("status {}", response.status()));
            }
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            let text = std::str::from_utf8(&body).map_err(|_| "the answer is not text".to_string())?;
            Ok(lists(text, suffix))
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| format!("no answer within {:?}", self.timeout))?
    }
}

/// Refuses `password` (422, field `password`) when the range API knows it; does nothing when
/// no API is configured. An API that cannot answer fails open (`Ok`) or closed
/// ([`FlowError::Unavailable`], 503) as `PWNED_PASSWORDS_FAIL_CLOSED` says. The one entry
/// point for every flow that sets a new password, after `Password::new` accepted it, with the
/// instance's `api` (`App::breach_api`) and `metrics`.
pub async fn check(api: Option<&RangeApi>, metrics: &Metrics, password: &Password) -> Result<(), FlowError> {
    let Some(api) = api else {
        return Ok(());
    };
    let started = Instant::now();
    let known = api.is_known(password.expose()).await;
    metrics.range_api_duration.observe(started.elapsed().as_secs_f64());
    let count = |outcome| {
        password_checks().get_or_create(&PasswordCheckLabels { source: CheckSource::range_api, outcome }).inc();
    };
    match known {
        Ok(false) => {
            count(CheckOutcome::accepted);
            Ok(())
        }
        Ok(true) => {
            count(CheckOutcome::refused);
            Err(FieldError::new("password", BREACHED_PASSWORD).into())
        }
        Err(reason) => {
            count(CheckOutcome::error);
            let fail_closed = api.fail_closed;
            tracing::warn!(reason = %reason, fail_closed, "the password range API could not answer");
            if fail_closed { Err(FlowError::Unavailable(Dependency::BreachCheck)) } else { Ok(()) }
        }
    }
}

/// Whether `answer` lists `suffix` with a count above zero. Padding lines (count 0) never
/// match, nor do lines that are not `SUFFIX:COUNT`.
fn lists(answer: &str, suffix: &str) -> bool {
    answer.lines().any(|line| {
        let Some((listed, count)) = line.trim().split_once(':') else {
            return false;
        };
        listed.eq_ignore_ascii_case(suffix) && count.trim().parse::<u64>().is_ok_and(|n| n > 0)
    })
}

fn upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    bytes.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_upper_case_sha1() {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, b"password");
        assert_eq!(upper_hex(digest.as_ref()), "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8");
    }

    #[test]
    fn only_a_listed_suffix_with_a_count_matches() {
        let suffix = "1E4C9B93F3F0682250B6CF8331B7EE68FD8";
        assert!(lists(
            "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n1E4C9B93F3F0682250B6CF8331B7EE68FD8:3861493\r\n",
            suffix
        ));
        assert!(lists("1e4c9b93f3f0682250b6cf8331b7ee68fd8:2", suffix));
        assert!(!lists("1E4C9B93F3F0682250B6CF8331B7EE68FD8:0\r\n", suffix), "padding never matches");
        assert!(!lists("1E4C9B93F3F0682250B6CF8331B7EE68FD8\r\n", suffix));
        assert!(!lists("1E4C9B93F3F0682250B6CF8331B7EE68FD9:12\r\n", suffix));
        assert!(!lists("", suffix));
    }
}
