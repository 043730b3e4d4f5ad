//! Response builders. Bodies are always complete in memory (`Full<Bytes>`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;

pub type Response = hyper::Response<Full<Bytes>>;

/// A JSON response. Serialising our own types cannot fail; if it ever did, the client gets an
/// empty object rather than a panic.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    with_body(status, "application/json", Bytes::from(bytes))
}

pub fn with_body(status: StatusCode, content_type: &'static str, body: Bytes) -> Response {
    let mut resp = hyper::Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub fn empty(status: StatusCode) -> Response {
    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
