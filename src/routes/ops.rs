//! Liveness, readiness and metrics.
//!
//! Readiness: [`readyz`] calls `HealthHandle::readiness`. The Health actor clones its
//! arguments, **spawns a task** that owns the reply port, and returns to its mailbox at once, so a
//! slow dependency delays only this answer. The task runs three probes concurrently, each under
//! `PROBE_TIMEOUT`, through the same handles requests use: `postgres` (`DatabaseHandle::ping`, a
//! worker runs `SELECT 1` on a pooled connection), `redis` (`RedisHandle::ping`, `PING`) and
//! `keys` (`KeyManagerHandle::status`: the active kid of the current snapshot, and what the last
//! reload could not load, reported as `degraded: …` without making the instance unready); it adds `actors`,
//! `ok` or the children that are not `Running`. The handler answers 200 `ready` or 503 `not_ready`
//! with `Retry-After: 1`; if Health itself cannot be called, 503 with `{"actors": "<reason>"}`.

use bytes::Bytes;
use hyper::StatusCode;

use crate::app::App;
use crate::http::{ApiError, Request, Response, response};

/// 200 while the process serves requests: answering at all is the proof of life.
pub async fn healthz(_app: &App, _req: Request) -> Result<Response, ApiError> {
    Ok(response::with_body(StatusCode::OK, "application/json", bytes::Bytes::from_static(br#"{"status":"ok"}"#)))
}

/// 200 when PostgreSQL, Redis, the keys and every actor are fine; 503 naming what is not.
pub async fn readyz(app: &App, _req: Request) -> Result<Response, ApiError> {
    if app.is_stopping() {
        let body = serde_json::json!({ "status": "stopping", "details": { "shutdown": "in progress" } });
        let mut resp = response::json(StatusCode::SERVICE_UNAVAILABLE, &body);
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, 1.into());
        return Ok(resp);
    }
    let (ready, details) = match app.services.health.readiness().await {
        Ok(r) => (r.ready, serde_json::to_value(&r.details).unwrap_or_default()),
        Err(e) => (false, serde_json::json!({ "actors": e.to_string() })),
    };
    if ready {
        Ok(response::json(StatusCode::OK, &serde_json::json!({ "status": "ready", "details": details })))
    } else {
        let mut resp = response::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "not_ready", "details": details }),
        );
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, 1.into());
        Ok(resp)
    }
}

/// `GET /metrics` on the API listener, unless metrics have a listener of their own.
pub async fn metrics_route(app: &App, _req: Request) -> Result<Response, ApiError> {
    if app.config.http.metrics_bind_addr.is_some() {
        return Err(ApiError::NotFound("metrics are served on METRICS_BIND_ADDR".into()));
    }
    Ok(metrics(app))
}

/// The metrics in the OpenMetrics text format, with the gauges read at scrape time set first.
pub fn metrics(app: &App) -> Response {
    if let Ok(keys) = app.services.keys.snapshot()
        && let Some(since) = keys.active_since()
    {
        let age = (time::OffsetDateTime::now_utc() - since).whole_seconds();
        app.metrics.active_key_age.set(age);
    }
    if let Some(pool) = app.services.db.pool_status() {
        let m = &app.metrics;
        m.db_pool_max.set(pool.max_size as i64);
        m.db_pool_size.set(pool.size as i64);
        m.db_pool_available.set(pool.available as i64);
        m.db_pool_waiting.set(pool.waiting as i64);
    }
    let body = app.metrics.render();
    response::with_body(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", Bytes::from(body))
}

/// The OpenAPI 3.1 document of this API, compiled in (`src/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");

pub async fn openapi(_app: &App, _req: Request) -> Result<Response, ApiError> {
    Ok(response::with_body(StatusCode::OK, "application/json", Bytes::from_static(OPENAPI.as_bytes())))
}

/// Makes one actor fail, to prove supervision. Compiled only with the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
pub async fn test_fail(app: &App, req: Request) -> Result<Response, ApiError> {
    let actor = req.params.first().map(String::as_str).unwrap_or_default();
    let index = req.query_param("worker")?.and_then(|w| w.parse().ok()).unwrap_or(0);
    let s = &app.services;
    let sent = match actor {
        "key_manager" => s.keys.fail("injected failure"),
        "user_store" => s.db.fail(index, "injected failure"),
        "rate_limiter" => s.redis.fail("injected failure"),
        "health" => s.health.fail("injected failure"),
        "mailer" => s.mailer.fail("injected failure"),
        other => return Err(ApiError::NotFound(format!("no actor {other:?}"))),
    };
    sent?;
    Ok(response::json(StatusCode::ACCEPTED, &serde_json::json!({ "detail": format!("{actor} told to fail") })))
}
