//! The probes: liveness always, readiness naming the dependency that is down.

use crate::helpers::{spawn_app, spawn_app_behind_redis_proxy};

#[tokio::test]
async fn healthz_returns_200_ok() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/v1/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn readyz_returns_200_with_every_part_ok() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/v1/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"status": "ready", "details": {"postgres": "ok", "redis": "ok", "keys": "ok", "actors": "ok"}})
    );
}

#[tokio::test]
async fn readyz_returns_503_naming_redis_when_redis_becomes_unreachable() {
    let (proxy, app) = spawn_app_behind_redis_proxy().await;
    assert_eq!(app.get("/api/v1/readyz").await.status(), 200);

    proxy.cut();
    let resp = app.get("/api/v1/readyz").await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["status"], "not_ready");
    assert_ne!(body["details"]["redis"], "ok", "{body}");
    assert_eq!(body["details"]["postgres"], "ok", "{body}");

    proxy.restore();
    app.eventually("readyz back to 200", || async { app.get("/api/v1/readyz").await.status() == 200 }).await;
}
