//! Password reset (SPEC §9): a link mailed through a real SMTP sink, the hosted pages, the JSON
//! API, and what a reset revokes.

use std::time::Duration;

use auth_actors::db::account_tokens::{self, Purpose};
use auth_actors::db::{Operation, PooledClient};
use auth_service::secret::Secret;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, assert_error, refresh_cookie, spawn_app_settings};
use crate::mail::MailSink;

const FORGOT: &str = "/api/v1/auth/password/forgot";
const RESET: &str = "/api/v1/auth/password/reset";
const NEW_PASSWORD: &str = "a brand new passphrase";

/// An instance that mails to `sink`, with extra `settings`.
pub(crate) async fn app_mailing_to(sink: &MailSink, settings: &[(&str, &str)]) -> TestApp {
    let smtp = sink.smtp_url();
    let mut all = vec![("SMTP_URL", smtp.as_str()), ("MAIL_POLL_INTERVAL", "200ms")];
    all.extend_from_slice(settings);
    spawn_app_settings(&all).await
}

pub(crate) async fn forgot(app: &TestApp, email: &str) -> Response {
    app.post_json(FORGOT, &json!({ "email": email })).await
}

pub(crate) async fn reset(app: &TestApp, token: &str, password: &str) -> Response {
    app.post_json(RESET, &json!({ "token": token, "new_password": password })).await
}

/// The token of the reset link in the `n`-th mail (from 1) to `email`.
pub(crate) async fn mailed_token(sink: &MailSink, email: &str, n: usize) -> String {
    let mails = reset_mails(sink, email, n).await;
    mails[n - 1].link_param("/account/reset-password", "token")
}

const SUBJECT: &str = "Reset your password";

/// The reset mails to `email` (its signup's verification mail left out), once `n` arrived.
async fn reset_mails(sink: &MailSink, email: &str, n: usize) -> Vec<crate::mail::Mail> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mails: Vec<_> = sink.messages(email).await.into_iter().filter(|m| m.subject == SUBJECT).collect();
        if mails.len() >= n {
            return mails;
        }
        assert!(std::time::Instant::now() < deadline, "{n} reset mail(s) to {email} did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stores a token the way the flows do ([`account_tokens::issue_in`]), on the service's pool.
struct StoreToken {
    purpose: Purpose,
    user_id: uuid::Uuid,
    email: String,
    digest: Vec<u8>,
}

impl Operation for StoreToken {
    type Output = ();

    async fn run(&self, client: &mut PooledClient) -> Result<(), tokio_postgres::Error> {
        let ttl = Duration::from_secs(600);
        account_tokens::issue_in(&*client, self.purpose, self.user_id, &self.email, &self.digest, ttl).await?;
        Ok(())
    }
}

/// A token of `purpose` for `user`, stored as a flow would store it (for the cases a mail
/// cannot produce: other purposes, expired links, races).
async fn stored_token(app: &TestApp, user: &TestUser, purpose: Purpose) -> String {
    let secret = Secret::generate().expect("random");
    let user_id: uuid::Uuid = user.id.parse().expect("uuid");
    let store = StoreToken { purpose, user_id, email: user.email.clone(), digest: secret.digest() };
    app.app.services.db.run(store).await.expect("stored");
    secret.encode()
}

async fn unused_tokens(app: &TestApp) -> i64 {
    app.db_value("SELECT count(*) FROM account_tokens WHERE used_at IS NULL AND purpose = 'password_reset'", &[]).await
}

#[tokio::test]
async fn a_mailed_link_resets_the_password_and_ends_every_session_and_token() {
    // Arrange: a user signed in twice, and a reset link in its mailbox.
    let sink = MailSink::start().await;
    let app = app_mailing_to(&sink, &[]).await;
    let user = app.new_user().await;
    let (first, second) = (app.login(&user).await, app.login(&user).await);
    assert_eq!(forgot(&app, &user.email).await.status(), 202);
    let token = mailed_token(&sink, &user.email, 1).await;

    // Act: the page is fetched (as a mail scanner would), twice; then the reset.
    for _ in 0..2 {
        let page = app.get(&format!("/account/reset-password?token={token}")).await;
        assert_eq!(page.status(), 200);
        assert!(page.text().await.expect("html").contains("name=\"new_password\""));
    }
    assert_eq!(unused_tokens(&app).await, 1, "a GET spends nothing");
    let weak = reset(&app, &token, "short").await;
    assert_error(weak, 422, "invalid_field").await;
    assert_eq!(unused_tokens(&app).await, 1, "a refused password spends nothing");
    assert_eq!(reset(&app, &token, NEW_PASSWORD).await.status(), 204);

    // Assert: the old password is refused, the new one works.
    assert_error(app.login_json(&user.username, &user.password).await, 401, "unauthorized").await;
    assert_eq!(app.login_json(&user.username, NEW_PASSWORD).await.status(), 200);
    // Every earlier access token and refresh token is dead.
    for session in [&first, &second] {
        let me = app.call(Method::GET, "/api/v1/sessions", Some(&session.access), None).await;
        assert_eq!(me.status(), 401, "an access token issued before the reset");
        assert_eq!(app.refresh(&session.refresh).await.status(), 401, "a refresh token issued before the reset");
    }
    // The notice arrived, and the event was recorded.
    let notice = sink.wait_for_subject(&user.email, "Your password was changed").await;
    assert!(notice.text.contains(&user.username) && !notice.text.contains(&token));
    assert_eq!(app.security_events("password_reset").await, 1);
    // The link works once.
    assert_error(reset(&app, &token, "another new passphrase").await, 400, "invalid_token").await;
}

#[tokio::test]
async fn the_hosted_pages_reset_with_a_csrf_token_and_only_on_the_post() {
    let sink = MailSink::start().await;
    let app = app_mailing_to(&sink, &[]).await;
    let user = app.new_user().await;

    // The forgot-password page sets a CSRF cookie; its form needs it.
    let page = app.get("/account/forgot-password").await;
    assert_eq!(page.status(), 200);
    let csrf = csrf_cookie(&page);
    assert!(page.headers()["content-security-policy"].to_str().expect("ascii").contains("form-action 'self'"));
    let form = [("csrf_token", csrf.as_str()), ("email", user.email.as_str())];
    let forged = app.client.post(app.url("/account/forgot-password")).form(&form).send().await.expect("send");
    assert_eq!(forged.status(), 403, "no CSRF cookie");
    let sent = post_form(&app, "/account/forgot-password", &csrf, &form).await;
    assert_eq!(sent.status(), 200);
    assert!(sent.text().await.expect("html").contains("Check your mail"));
    let token = mailed_token(&sink, &user.email, 1).await;

    // The link's page shows the form; a refused password shows it again, unspent.
    let page = app.get(&format!("/account/reset-password?token={token}")).await;
    assert_eq!(page.status(), 200);
    let csrf = csrf_cookie(&page);
    let weak = [("csrf_token", csrf.as_str()), ("token", token.as_str()), ("new_password", "short")];
    let again = post_form(&app, "/account/reset-password", &csrf, &weak).await;
    assert_eq!(again.status(), 422);
    assert!(again.text().await.expect("html").contains("aria-invalid=\"true\""));
    let good = [("csrf_token", csrf.as_str()), ("token", token.as_str()), ("new_password", NEW_PASSWORD)];
    let wrong_csrf = post_form(&app, "/account/reset-password", "x".repeat(43).as_str(), &good).await;
    assert_eq!(wrong_csrf.status(), 403);
    let done = post_form(&app, "/account/reset-password", &csrf, &good).await;
    assert_eq!(done.status(), 200);
    assert!(done.text().await.expect("html").contains("Password changed"));
    assert_eq!(app.login_json(&user.username, NEW_PASSWORD).await.status(), 200);

    // A used link is the error page.
    let used = app.get(&format!("/account/reset-password?token={token}")).await;
    assert_eq!(used.status(), 400);
}

/// The CSRF cookie a page set.
pub(crate) fn csrf_cookie(resp: &Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.split(';').next()?.strip_prefix("csrf=").map(str::to_string))
        .expect("a CSRF cookie")
}

pub(crate) async fn post_form(app: &TestApp, path: &str, csrf: &str, form: &[(&str, &str)]) -> Response {
    let req = app.client.post(app.url(path)).header("cookie", format!("csrf={csrf}")).form(form);
    req.send().await.expect("send")
}

/// The headers of a `forgot` answer that could differ between two requests for reasons of
/// their own (the request id, the clock, the remaining budget), left out of the comparison.
fn stable_headers(resp: &Response) -> Vec<(String, String)> {
    let varying = ["date", "x-request-id", "ratelimit-remaining", "ratelimit-reset"];
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(name, _)| !varying.contains(&name.as_str()))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_string()))
        .collect();
    headers.sort();
    headers
}

#[tokio::test]
async fn forgot_answers_an_unknown_address_as_a_known_one_before_looking_and_mails_no_stranger() {
    let sink = MailSink::start().await;
    let app = app_mailing_to(&sink, &[]).await;
    let user = app.new_user().await;
    let stranger = "nobody-here@example.com";

    // Hold the account's row, so that storing its link must wait: the answer does not.
    let lock = app.db().await;
    lock.batch_execute("BEGIN").await.expect("begin");
    let id: uuid::Uuid = user.id.parse().expect("uuid");
    lock.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&id]).await.expect("lock");
    let answered = tokio::time::timeout(Duration::from_secs(10), forgot(&app, &user.email)).await;
    let known = answered.expect("answered while the account's row is held");
    let unknown = forgot(&app, stranger).await;
    let form = app.post_body(FORGOT, "application/x-www-form-urlencoded", "email=nobody-else%40example.com").await;
    let pending: i64 = app.db_value("SELECT count(*) FROM mail_outbox WHERE kind = 'password_reset'", &[]).await;
    assert_eq!(pending, 0, "the 202 went out before the link was stored");
    lock.batch_execute("ROLLBACK").await.expect("rollback");

    assert_eq!([known.status(), unknown.status(), form.status()].map(|s| s.as_u16()), [202, 202, 202]);
    assert_eq!(stable_headers(&known), stable_headers(&unknown));
    assert_eq!(stable_headers(&known), stable_headers(&form));
    let mut bodies = Vec::new();
    for resp in [known, unknown, form] {
        bodies.push(resp.json::<Value>().await.expect("json"));
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");

    // Only the account gets mail, once its row is free.
    reset_mails(&sink, &user.email, 1).await;
    let outbox: Vec<String> = app
        .db()
        .await
        .query("SELECT recipient FROM mail_outbox WHERE kind = 'password_reset'", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(outbox, vec![user.email.clone()]);
    assert!(sink.messages(stranger).await.is_empty());
}

#[tokio::test]
async fn a_newer_request_voids_the_older_link() {
    let sink = MailSink::start().await;
    let app = app_mailing_to(&sink, &[]).await;
    let user = app.new_user().await;
    assert_eq!(forgot(&app, &user.email).await.status(), 202);
    let older = mailed_token(&sink, &user.email, 1).await;
    assert_eq!(forgot(&app, &user.email).await.status(), 202);
    let newer = mailed_token(&sink, &user.email, 2).await;

    assert_error(reset(&app, &older, NEW_PASSWORD).await, 400, "invalid_token").await;
    assert_eq!(reset(&app, &newer, NEW_PASSWORD).await.status(), 204);
}

/// Asserts that `token` is refused by the API (400 `invalid_token`) and by the page (400);
/// returns the API's body.
async fn refused(app: &TestApp, token: &str, what: &str) -> Value {
    let page = app.get(&format!("/account/reset-password?token={}", urlencode(token))).await;
    assert_eq!(page.status(), 400, "the page of a link {what}");
    let resp = reset(app, token, "yet another passphrase").await;
    assert_eq!(resp.status(), 400, "a link {what}");
    resp.json().await.expect("json")
}

#[tokio::test]
async fn every_link_that_cannot_be_used_gets_the_same_answer_and_never_a_5xx() {
    let sink = MailSink::start().await;
    let app = app_mailing_to(&sink, &[]).await;
    let user = app.new_user().await;
    let uid: uuid::Uuid = user.id.parse().expect("uuid");
    let mut bodies = Vec::new();

    bodies.push(refused(&app, &Secret::generate().expect("random").encode(), "never issued").await);
    bodies.push(refused(&app, "not-a-token", "that is no token at all").await);
    bodies.push(refused(&app, "", "without a token").await);

    let used = stored_token(&app, &user, Purpose::PasswordReset).await;
    assert_eq!(reset(&app, &used, NEW_PASSWORD).await.status(), 204);
    bodies.push(refused(&app, &used, "already used").await);

    let other_purpose = stored_token(&app, &user, Purpose::VerifyEmail).await;
    bodies.push(refused(&app, &other_purpose, "of another purpose").await);

    let expired = stored_token(&app, &user, Purpose::PasswordReset).await;
    let expire = "UPDATE account_tokens SET expires_at = now() - interval '1 second'
                  WHERE purpose = 'password_reset' AND used_at IS NULL";
    app.db().await.execute(expire, &[]).await.expect("expire");
    bodies.push(refused(&app, &expired, "that expired").await);

    let mut tampered = stored_token(&app, &user, Purpose::PasswordReset).await.into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    bodies.push(refused(&app, &String::from_utf8(tampered).expect("ascii"), "tampered with").await);

    let disabled = stored_token(&app, &user, Purpose::PasswordReset).await;
    app.db().await.execute("UPDATE users SET is_active = false WHERE id = $1", &[&uid]).await.expect("disable");
    bodies.push(refused(&app, &disabled, "of a disabled account").await);

    assert_eq!(bodies[0]["error"], "invalid_token");
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    assert_eq!(app.security_events("password_reset").await, 1, "only the one good link reset");
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[tokio::test]
async fn of_two_parallel_resets_with_one_link_exactly_one_succeeds() {
    let sink = MailSink::start().await;
    let app = app_mailing_to(&sink, &[]).await;
    let user = app.new_user().await;
    let token = stored_token(&app, &user, Purpose::PasswordReset).await;

    let (a, b) = tokio::join!(
        reset(&app, &token, "first parallel passphrase"),
        reset(&app, &token, "second parallel passphrase")
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [204, 400]);
    assert_eq!(app.security_events("password_reset").await, 1);
}

#[tokio::test]
async fn forgot_is_limited_per_ip_and_mails_an_account_no_more_than_its_budget() {
    let sink = MailSink::start().await;
    let settings = [("RATE_LIMIT_RECOVERY", "4/3600s"), ("RATE_LIMIT_RECOVERY_ACCOUNT", "2/3600s")];
    let app = app_mailing_to(&sink, &settings).await;
    let user = app.new_user().await;

    // Four requests for one account: all answered alike, two mailed.
    for _ in 0..4 {
        assert_eq!(forgot(&app, &user.email).await.status(), 202);
    }
    // A fifth request from this IP, for any address, is refused like any other limited one.
    assert_error(forgot(&app, "someone-else@example.com").await, 429, "rate_limited").await;

    app.eventually("two requests over the account's budget", || async {
        app.metric(r#"auth_rate_limited_total{class="recovery_account"}"#).await == 2.0
    })
    .await;
    reset_mails(&sink, &user.email, 2).await;
    let stored: i64 = app.db_value("SELECT count(*) FROM mail_outbox WHERE kind = 'password_reset'", &[]).await;
    assert_eq!(stored, 2, "no mail beyond the account's budget");
    assert_eq!(reset_mails(&sink, &user.email, 2).await.len(), 2);
}

#[tokio::test]
async fn a_reset_lifts_the_login_lockout_of_the_account() {
    let sink = MailSink::start().await;
    let app = app_mailing_to(&sink, &[("LOCKOUT_THRESHOLD", "2")]).await;
    let user = app.new_user().await;
    for _ in 0..3 {
        app.login_json(&user.username, "wrong password").await;
    }
    assert_error(app.login_json(&user.username, &user.password).await, 429, "rate_limited").await;

    let token = stored_token(&app, &user, Purpose::PasswordReset).await;
    assert_eq!(reset(&app, &token, NEW_PASSWORD).await.status(), 204);

    let login = app.login_json(&user.username, NEW_PASSWORD).await;
    assert_eq!(login.status(), 200, "the mailbox's owner is let in at once");
    assert!(refresh_cookie(&login).is_some());
}
