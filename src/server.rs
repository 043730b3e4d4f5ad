//! The accept loop and the per-request wrapper.
//!
//! Each connection is served by hyper-util's auto builder (HTTP/1.1, and HTTP/2 with prior
//! knowledge, "h2c") under a header-read timeout and a cap on open connections. An HTTP/1
//! request without its one well-formed `Host` is refused with 400 before routing. Each request
//! gets an id (the client's `X-Request-Id` when it is sane, else a new one), is routed, handled
//! inside a tracing span carrying that id, answered with the id echoed back, counted, and
//! logged in exactly one access-log line.
//!
//! Every answer leaves here with `X-Content-Type-Options: nosniff`, and with
//! `Cache-Control: no-store` unless its handler chose its own caching (the JWKS, discovery and
//! the stylesheet are meant to be cached): sessions, login history, user lists, events and
//! clients are personal data that no browser or shared cache may keep, and a default that
//! every route gets cannot be forgotten by the next one.
//!
//! Shutdown: once `shutdown` resolves — after `SHUTDOWN_DELAY`, during which readyz answers
//! 503 and HTTP/1.1 answers carry `Connection: close` (`App::is_stopping`), or at once when
//! the actor tree stops by itself — the loop stops
//! accepting, asks every connection to finish its in-flight requests, and waits for them at
//! most `shutdown_grace`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::app::App;
use crate::http::{ApiError, Request, Response, request};
use crate::metrics::{RequestLabels, RouteLabels};
use crate::routes::table;

const REQUEST_ID: &str = "x-request-id";

/// Serves `listener` until `shutdown` resolves, then drains. Returns once every connection has
/// closed or the grace period has passed.
pub async fn serve(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) {
    let http = app.config.http.clone();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(http.max_connections.max(1)));
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let requested = Arc::new(AtomicBool::new(false));
        let service = service_fn({
            let requested = requested.clone();
            move |req| {
                requested.store(true, Ordering::Relaxed);
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(app, req, peer).await) }
            }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        let first_request_timeout = http.header_read_timeout;
        tokio::spawn(async move {
            // hyper's header-read timeout starts only once its HTTP/1 parser runs; the version
            // sniffing of the auto builder and HTTP/2 have none. So the first request must
            // start within HEADER_READ_TIMEOUT of the accept, or the connection is dropped.
            let no_first_request = async {
                tokio::time::sleep(first_request_timeout).await;
                if requested.load(Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection closed with an error");
                },
                () = no_first_request => tracing::debug!(%peer, "closed: no request within the header read timeout"),
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(grace_secs = http.shutdown_grace.as_secs_f64(), "shutting down: draining connections");
    if tokio::time::timeout(http.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace period elapsed with connections still open");
    }
}

/// Accepts the client's request id if it is short, visible ASCII; otherwise makes one.
fn request_id(req: &hyper::Request<Incoming>) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

async fn handle(app: App, req: hyper::Request<Incoming>, peer: SocketAddr) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let http11 = req.version() == hyper::Version::HTTP_11;
    let host = request::check_host(&req);
    let mut request = Request::new(req, id.clone(), peer, &app.config.http);
    let method = request.method.clone();
    let peer_ip = request.peer_ip;
    let span = tracing::info_span!("request", request_id = %id);
    let (template, mut response) = match host.and_then(|()| table::find(&method, &request.path)) {
        Ok((route, params)) => {
            request.params = params;
            let result = crate::routes::dispatch(&app, route, request).instrument(span.clone()).await;
            (route.template, result.unwrap_or_else(|e| e.into_response()))
        }
        Err(e) => ("unmatched", e.into_response()),
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let headers = response.headers_mut();
    headers.insert(hyper::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.entry(hyper::header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    if http11 && app.is_stopping() {
        // Moves keep-alive clients to a new connection (and so to another instance) before the
        // drain closes this one under them.
        response.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let method_label = method_label(&method);
    app.metrics.requests.get_or_create(&RequestLabels { route: template, method: method_label, status }).inc();
    app.metrics
        .request_duration
        .get_or_create(&RouteLabels { route: template, method: method_label })
        .observe(elapsed.as_secs_f64());
    crate::telemetry::access(&crate::telemetry::Access {
        request_id: &id,
        method: method.as_str(),
        route: template,
        status,
        latency: elapsed,
        client_ip: peer_ip,
    });
    response
}

/// A fixed set of method names, so that the label cannot be used to grow the metric.
fn method_label(method: &hyper::Method) -> &'static str {
    match *method {
        hyper::Method::GET => "GET",
        hyper::Method::POST => "POST",
        hyper::Method::PUT => "PUT",
        hyper::Method::PATCH => "PATCH",
        hyper::Method::DELETE => "DELETE",
        hyper::Method::HEAD => "HEAD",
        hyper::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Serves `GET /metrics` alone on its own listener (`METRICS_BIND_ADDR`), over HTTP/1.1.
pub async fn serve_metrics(listener: TcpListener, app: App) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let app = app.clone();
                async move {
                    let resp = if req.method() == hyper::Method::GET && req.uri().path() == "/metrics" {
                        crate::routes::render_metrics(&app)
                    } else {
                        ApiError::NotFound("only /metrics is served here".into()).into_response()
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
        });
    }
}
