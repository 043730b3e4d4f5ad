//! The real binary with LOG_FORMAT=json: every line parses, requests are logged once with
//! their fields, and no secret ever appears.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::helpers::{free_port, fresh_database, refresh_cookie, serve_command};

#[tokio::test]
async fn json_logs_parse_line_by_line_and_never_contain_a_password_or_token() {
    let db = fresh_database().await;
    let (port, metrics_port) = (free_port(), free_port());
    let mut child = serve_command("logs", &db, port)
        .await
        .env("METRICS_BIND_ADDR", format!("127.0.0.1:{metrics_port}"))
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::wait_until_ready(&base).await;

    let password = "Sup3r-secret-passw0rd";
    let signup = client
        .post(format!("{base}/api/v1/users/signup"))
        .json(&serde_json::json!({"username": "log_user", "email": "log@example.com", "password": password}))
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), 201);
    let login = client
        .post(format!("{base}/api/v1/auth/login"))
        .header("x-request-id", "trace-me-123")
        .form(&[("username", "log_user"), ("password", password)])
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let refresh_token = refresh_cookie(&login).expect("cookie");
    let access: serde_json::Value = login.json().await.expect("json");
    let access_token = access["access_token"].as_str().expect("token").to_string();
    client
        .post(format!("{base}/api/v1/auth/login-json"))
        .json(&serde_json::json!({"username": "log_user", "password": "wrong-but-secret"}))
        .send()
        .await
        .expect("bad login");
    let refreshed = client
        .post(format!("{base}/api/v1/auth/refresh"))
        .header("cookie", format!("refresh_token={refresh_token}"))
        .send()
        .await
        .expect("refresh");
    let new_refresh = refresh_cookie(&refreshed).expect("cookie");
    client.get(format!("{base}/api/v1/sessions")).bearer_auth(&access_token).send().await.expect("sessions");
    assert_eq!(client.get(format!("{base}/metrics")).send().await.expect("metrics").status(), 404);
    assert_eq!(
        client.get(format!("http://127.0.0.1:{metrics_port}/metrics")).send().await.expect("metrics").status(),
        200
    );

    // SIGTERM: graceful shutdown, exit 0.
    let pid = child.id().expect("pid");
    std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("kill");
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).await.expect("read");

    let mut requests = 0;
    let mut traced = false;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for secret in [password, "wrong-but-secret", &access_token, &refresh_token, &new_refresh] {
            assert!(!line.contains(secret), "a secret leaked into: {line}");
        }
        assert!(!line.contains("postgres://"), "the database URL leaked into: {line}");
        if v["target"] == "access" {
            requests += 1;
            for field in ["method", "route", "status", "latency_ms", "client_ip"] {
                assert!(v.get(field).is_some(), "{field} missing: {line}");
            }
            assert!(v["span"]["request_id"].is_string(), "request id missing: {line}");
            if v["span"]["request_id"] == "trace-me-123" {
                traced = true;
                assert_eq!(v["route"], "/api/v1/auth/login");
            }
        }
    }
    assert!(requests >= 6, "one line per request: {requests}");
    assert!(traced, "the client's request id is carried into the log");
}
