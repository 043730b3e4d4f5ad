//! The password policy of §9: the bundled list of common and breached passwords at signup and
//! at a password change, and the k-anonymity range API against a fake one started here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, assert_error, spawn_app, spawn_app_on, spawn_app_settings, unique_name};

/// On the bundled list (as `password1`), long enough for the length rule.
const LISTED: &str = "Password1";
/// Not on the bundled list.
const FRESH: &str = "violet tractor umbrella 42";
const REFUSED: &str = "password is too common or appeared in a data breach; choose another";

fn sha1_hex(password: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

async fn checks(app: &TestApp, source: &str, outcome: &str) -> f64 {
    app.metric(&format!("auth_password_checks_total{{source=\"{source}\",outcome=\"{outcome}\"}}")).await
}

async fn users_named(app: &TestApp, username: &str) -> i64 {
    app.db_value("SELECT count(*) FROM users WHERE username = $1", &[&username]).await
}

/// Signs up a fresh name with `password`; returns the name and the response.
async fn signup_with(app: &TestApp, password: &str) -> (String, reqwest::Response) {
    let name = unique_name("pw");
    let resp = app.signup(&name, &format!("{name}@example.com"), password).await;
    (name, resp)
}

#[tokio::test]
async fn signup_refuses_a_listed_password_with_422_and_creates_no_user() {
    let app = spawn_app().await;
    let before = checks(&app, "blocklist", "refused").await;
    for listed in [LISTED, "iloveyou", "QWERTY123"] {
        let (name, resp) = signup_with(&app, listed).await;
        let body = assert_error(resp, 422, "invalid_field").await;
        assert_eq!(body["detail"], REFUSED, "{listed}");
        assert_eq!(users_named(&app, &name).await, 0, "{listed}");
    }
    assert!(checks(&app, "blocklist", "refused").await >= before + 3.0);
}

#[tokio::test]
async fn a_password_change_to_a_listed_password_is_refused_and_the_old_one_still_works() {
    let app = spawn_app().await;
    let (user, session) = app.user_session().await;
    let resp =
        app.update_profile(&session.access, json!({"old_password": user.password, "new_password": LISTED})).await;
    let body = assert_error(resp, 422, "invalid_field").await;
    assert_eq!(body["detail"], REFUSED);
    assert_eq!(app.login_json(&user.username, &user.password).await.status(), 200);
    assert_eq!(app.login_json(&user.username, LISTED).await.status(), 401);
}

#[tokio::test]
async fn listed_passwords_are_accepted_when_the_blocklist_is_off() {
    let app = spawn_app_settings(&[("PASSWORD_BLOCKLIST", "false")]).await;
    let (name, resp) = signup_with(&app, LISTED).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(users_named(&app, &name).await, 1);
    let (user, session) = app.user_session().await;
    let resp =
        app.update_profile(&session.access, json!({"old_password": user.password, "new_password": "iloveyou"})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.login_json(&user.username, "iloveyou").await.status(), 200);
}

#[tokio::test]
async fn an_account_whose_password_is_listed_still_signs_in() {
    let before = spawn_app_settings(&[("PASSWORD_BLOCKLIST", "false")]).await;
    let (name, resp) = signup_with(&before, LISTED).await;
    assert_eq!(resp.status(), 201);
    let app = spawn_app_on(&before.database, |_| {}).await;
    assert_eq!(app.login_json(&name, LISTED).await.status(), 200);
}

/// What the fake range API answers.
#[derive(Clone, Copy)]
enum Answer {
    /// 200 with padding lines and the given suffix lines.
    Lines(&'static [(&'static str, u32)]),
    /// 200 listing `password`'s own suffix with this count, among padding.
    Knows {
        count: u32,
    },
    /// Waits this long before answering an empty list.
    Slow(Duration),
    Status(u16),
}

/// A request the fake range API received: its path and its `Add-Padding` header.
type Received = (String, Option<String>);

/// A fake k-anonymity range API on a random port: answers every request with `answer` and
/// records each request's path and `Add-Padding` header.
struct FakeRangeApi {
    url: String,
    requests: Arc<Mutex<Vec<Received>>>,
}

impl FakeRangeApi {
    async fn start(password: &'static str, answer: Answer) -> FakeRangeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/range/", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let path = head.split(' ').nth(1).unwrap_or_default().to_string();
                    let padding = head.lines().find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("add-padding").then(|| value.trim().to_string())
                    });
                    recorded.lock().expect("lock").push((path, padding));
                    let mut body = String::new();
                    for i in 0..50u32 {
                        body.push_str(&format!("{:035X}:0\r\n", u128::from(i) * 0x9E37_79B9_7F4A_7C15));
                    }
                    let status = match answer {
                        Answer::Lines(lines) => {
                            for (suffix, count) in lines {
                                body.push_str(&format!("{suffix}:{count}\r\n"));
                            }
                            200
                        }
                        Answer::Knows { count } => {
                            body.push_str(&format!("{}:{count}\r\n", &sha1_hex(password)[5..]));
                            200
                        }
                        Answer::Slow(wait) => {
                            tokio::time::sleep(wait).await;
                            200
                        }
                        Answer::Status(status) => status,
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        FakeRangeApi { url, requests }
    }

    fn requests(&self) -> Vec<Received> {
        self.requests.lock().expect("lock").clone()
    }
}

async fn app_with_range_api(url: &str, fail_closed: bool) -> TestApp {
    spawn_app_settings(&[
        ("PWNED_PASSWORDS_URL", url),
        ("PWNED_PASSWORDS_TIMEOUT", "500ms"),
        ("PWNED_PASSWORDS_FAIL_CLOSED", if fail_closed { "true" } else { "false" }),
    ])
    .await
}

#[tokio::test]
async fn the_range_api_is_sent_only_the_hash_prefix_and_a_known_password_is_refused() {
    let api = FakeRangeApi::start(FRESH, Answer::Knows { count: 42 }).await;
    let app = app_with_range_api(&api.url, false).await;
    let before = checks(&app, "range_api", "refused").await;
    let (name, resp) = signup_with(&app, FRESH).await;
    let body = assert_error(resp, 422, "invalid_field").await;
    assert_eq!(body["detail"], REFUSED);
    assert_eq!(users_named(&app, &name).await, 0);

    let requests = api.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let (path, padding) = &requests[0];
    let hash = sha1_hex(FRESH);
    assert_eq!(path, &format!("/range/{}", &hash[..5]));
    assert!(!path.contains(&hash[5..]) && !path.contains("violet"), "{path}");
    assert_eq!(padding.as_deref(), Some("true"));
    assert!(checks(&app, "range_api", "refused").await >= before + 1.0);
}

#[tokio::test]
async fn a_password_the_range_api_does_not_list_is_accepted() {
    let api = FakeRangeApi::start(FRESH, Answer::Lines(&[("0018A45C4D1DEF81644B54AB7F969B88D65", 3)])).await;
    let app = app_with_range_api(&api.url, true).await;
    let before = checks(&app, "range_api", "accepted").await;
    let (name, resp) = signup_with(&app, FRESH).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(users_named(&app, &name).await, 1);
    assert_eq!(api.requests().len(), 1);
    assert!(checks(&app, "range_api", "accepted").await >= before + 1.0);
    assert!(app.metric("auth_password_range_api_duration_seconds_count").await >= 1.0);
}

#[tokio::test]
async fn padding_lines_never_refuse_a_password() {
    // The password's own suffix, but with the count 0 that marks padding.
    let api = FakeRangeApi::start(FRESH, Answer::Knows { count: 0 }).await;
    let app = app_with_range_api(&api.url, true).await;
    let (_, resp) = signup_with(&app, FRESH).await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn a_password_change_to_a_password_the_range_api_knows_is_refused() {
    let api = FakeRangeApi::start(FRESH, Answer::Knows { count: 7 }).await;
    let app = app_with_range_api(&api.url, false).await;
    let (user, session) = app.user_session().await;
    let resp = app.update_profile(&session.access, json!({"old_password": user.password, "new_password": FRESH})).await;
    let body = assert_error(resp, 422, "invalid_field").await;
    assert_eq!(body["detail"], REFUSED);
    assert_eq!(app.login_json(&user.username, &user.password).await.status(), 200);
}

/// A URL on a port nothing listens on.
async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/range/")
}

#[tokio::test]
async fn an_unreachable_range_api_fails_open_and_is_counted() {
    let app = app_with_range_api(&closed_port_url().await, false).await;
    let before = checks(&app, "range_api", "error").await;
    let (name, resp) = signup_with(&app, FRESH).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(users_named(&app, &name).await, 1);
    assert!(checks(&app, "range_api", "error").await >= before + 1.0);
}

#[tokio::test]
async fn an_unreachable_range_api_fails_closed_with_503_when_configured() {
    let app = app_with_range_api(&closed_port_url().await, true).await;
    let before = checks(&app, "range_api", "error").await;
    let (name, resp) = signup_with(&app, FRESH).await;
    assert_error(resp, 503, "service_unavailable").await;
    assert_eq!(users_named(&app, &name).await, 0);
    assert!(checks(&app, "range_api", "error").await >= before + 1.0);
}

#[tokio::test]
async fn a_range_api_slower_than_its_timeout_counts_as_unreachable() {
    let api = FakeRangeApi::start(FRESH, Answer::Slow(Duration::from_secs(10))).await;
    let app = app_with_range_api(&api.url, true).await;
    let started = Instant::now();
    let (name, resp) = signup_with(&app, FRESH).await;
    assert_error(resp, 503, "service_unavailable").await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(users_named(&app, &name).await, 0);
    assert_eq!(api.requests().len(), 1);
}

#[tokio::test]
async fn a_range_api_answering_an_error_status_fails_open_by_default() {
    let api = FakeRangeApi::start(FRESH, Answer::Status(500)).await;
    let app = app_with_range_api(&api.url, false).await;
    let (_, resp) = signup_with(&app, FRESH).await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn a_listed_password_is_refused_before_the_range_api_is_asked() {
    let api = FakeRangeApi::start(LISTED, Answer::Knows { count: 1 }).await;
    let app = app_with_range_api(&api.url, false).await;
    let (_, resp) = signup_with(&app, LISTED).await;
    assert_error(resp, 422, "invalid_field").await;
    assert!(api.requests().is_empty());
}
