//! The HTTP layer every route shares: request ids, JSON 404 and 405, HTTP/2, request metrics,
//! graceful shutdown and the header read timeout.

use crate::helpers::{assert_error, spawn_app, spawn_app_setting};

#[tokio::test]
async fn a_request_id_sent_by_the_client_is_echoed() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/api/v1/healthz")).header("x-request-id", "abc-123").send().await.expect("send");
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn a_request_without_an_id_gets_a_generated_one() {
    let app = spawn_app().await;
    let resp = app.get("/api/v1/healthz").await;
    let id = resp.headers()["x-request-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn a_known_path_with_the_wrong_method_is_a_json_405() {
    let app = spawn_app().await;
    let resp = app.call(reqwest::Method::DELETE, "/api/v1/healthz", None, None).await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
    assert_error(resp, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    let resp = client.get(app.url("/api/v1/healthz")).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
}

#[tokio::test]
async fn requests_are_counted_by_route_template() {
    let app = spawn_app().await;
    app.get("/api/v1/healthz").await;
    app.get("/api/v1/healthz").await;
    let n = app.metric(r#"auth_http_requests_total{route="/api/v1/healthz",method="GET",status="200"}"#).await;
    assert_eq!(n, 2.0);
}

#[tokio::test]
async fn shutdown_completes_and_reports_a_requested_exit() {
    let app = spawn_app().await;
    assert_eq!(app.get("/api/v1/healthz").await.status(), 200);
    let exit = tokio::time::timeout(std::time::Duration::from_secs(10), app.stop()).await.expect("stops in time");
    assert_eq!(exit, auth_service::startup::Exit::Requested);
}

#[tokio::test]
async fn a_stopping_instance_is_not_ready_but_still_serves_for_the_shutdown_delay_then_drains() {
    // Arrange
    let mut app = spawn_app_setting("SHUTDOWN_DELAY", "2s").await;
    assert_eq!(app.get("/api/v1/readyz").await.status(), 200);

    // Act: what SIGTERM does.
    app.begin_shutdown();

    // Assert: readiness fails at once, while every other route (a write included) still
    // answers, each HTTP/1.1 answer closing its connection.
    let ready = app.get("/api/v1/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["retry-after"], "1");
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "stopping");
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status(), 200, "still serving");
    assert_eq!(jwks.headers()["connection"], "close");
    let user = app.new_user().await;
    assert!(!user.id.is_empty(), "a signup still lands");
    let exit = tokio::time::timeout(std::time::Duration::from_secs(15), app.handle.take().expect("running"))
        .await
        .expect("stops after the delay")
        .expect("join");
    assert_eq!(exit, auth_service::startup::Exit::Requested);
    assert!(reqwest::get(app.url("/api/v1/healthz")).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed_after_the_header_read_timeout() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app_setting("HEADER_READ_TIMEOUT", "300ms").await;
    let mut idle = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), idle.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the server closes it: {read:?}");
    assert_eq!(app.get("/api/v1/healthz").await.status(), 200);
}
