//! Supervision seen from outside: an actor made to fail (test-build hook) is restarted, the
//! restart is counted, and the service keeps answering; past the intensity limit the service
//! stops with an escalated exit.

use crate::helpers::{TestApp, spawn_app, spawn_app_settings};

async fn fail(app: &TestApp, actor: &str) -> u16 {
    app.fail_actor(actor).await.status().as_u16()
}

async fn restarts(app: &TestApp, actor: &str) -> f64 {
    app.metric(&format!("auth_actor_restarts_total{{actor=\"{actor}\"}}")).await
}

async fn assert_restarted_and_serving(actor: &str) {
    let app = spawn_app().await;
    assert_eq!(restarts(&app, actor).await, 0.0);

    assert_eq!(fail(&app, actor).await, 202);

    app.eventually("restart counted", || async { restarts(&app, actor).await == 1.0 }).await;
    assert_eq!(app.get("/api/v1/healthz").await.status(), 200);
    app.eventually("ready again", || async { app.get("/api/v1/readyz").await.status() == 200 }).await;
    assert_eq!(app.get("/.well-known/jwks.json").await.status(), 200);
}

#[tokio::test]
async fn a_failed_key_manager_is_restarted_counted_and_the_service_keeps_answering() {
    assert_restarted_and_serving("key_manager").await;
}

#[tokio::test]
async fn a_failed_user_store_worker_is_restarted_counted_and_the_service_keeps_answering() {
    assert_restarted_and_serving("user_store").await;
}

#[tokio::test]
async fn a_failed_rate_limiter_is_restarted_counted_and_the_service_keeps_answering() {
    assert_restarted_and_serving("rate_limiter").await;
}

#[tokio::test]
async fn a_failed_health_actor_is_restarted_counted_and_the_service_keeps_answering() {
    assert_restarted_and_serving("health").await;
}

#[tokio::test]
async fn a_failed_mailer_is_restarted_counted_and_the_service_keeps_answering() {
    assert_restarted_and_serving("mailer").await;
}

#[tokio::test]
async fn failures_past_the_restart_intensity_limit_stop_the_service_with_an_escalated_exit() {
    let mut app = spawn_app_settings(&[("RESTART_MAX", "2"), ("RESTART_WINDOW", "60s")]).await;
    for round in 1..=2u32 {
        assert_eq!(fail(&app, "user_store").await, 202);
        app.eventually("restart counted", || async { restarts(&app, "user_store").await == f64::from(round) }).await;
    }
    assert_eq!(fail(&app, "user_store").await, 202);
    let handle = app.handle.take().expect("running");
    let exit = tokio::time::timeout(std::time::Duration::from_secs(10), handle).await.expect("stops").expect("join");
    assert_eq!(exit, auth_service::startup::Exit::Escalated);
}
