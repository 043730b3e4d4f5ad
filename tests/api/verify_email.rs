//! Verified email (SPEC §9): the link mailed at signup, its page (a GET never spends it, the
//! POST does), the JSON confirmation, resending, every bad token refused alike, and
//! `REQUIRE_VERIFIED_EMAIL` refusing a login only after the right password.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, assert_error, claims, spawn_app_setting, spawn_app_settings};
use crate::mail::{Mail, MailSink};
use crate::oidc::{self, Fixture};

/// Subjects of the mails, by what they are for.
pub(crate) const VERIFY: &str = "Verify your email address";
pub(crate) const CHANGE: &str = "Confirm your new email address";
pub(crate) const REQUESTED: &str = "A change of your email address was requested";
pub(crate) const CHANGED: &str = "Your email address was changed";

/// The SMTP sink an instance delivers to.
pub(crate) struct Inbox {
    sink: MailSink,
}

impl Inbox {
    /// Waits until `n` mails with `subject` reached `to`, and returns the `n`th (the newest
    /// when `n` is how many were sent).
    pub(crate) async fn mail(&self, to: &str, subject: &str, n: usize) -> Mail {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let mut got: Vec<Mail> =
                self.sink.messages(to).await.into_iter().filter(|m| m.subject == subject).collect();
            if got.len() >= n {
                return got.swap_remove(n - 1);
            }
            assert!(std::time::Instant::now() < deadline, "mail {n} {subject:?} to {to} did not arrive");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Every mail `to` received, once delivery had a moment to deliver anything still due.
    pub(crate) async fn settled(&self, to: &str) -> Vec<Mail> {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        self.sink.messages(to).await
    }
}

/// An instance that delivers its mail to a sink of its own, with `settings`.
pub(crate) async fn mail_app(settings: &[(&str, &str)]) -> (TestApp, Inbox) {
    let sink = MailSink::start().await;
    let smtp = sink.smtp_url();
    let mut all = vec![("SMTP_URL", smtp.as_str()), ("MAIL_POLL_INTERVAL", "200ms")];
    all.extend_from_slice(settings);
    (spawn_app_settings(&all).await, Inbox { sink })
}

pub(crate) async fn post_token(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.post_json(path, &json!({ "token": token })).await
}

/// `GET` a mailed link's page on `browser`: its status and body.
pub(crate) async fn open_link(app: &TestApp, browser: &reqwest::Client, path: &str, token: &str) -> (u16, String) {
    oidc::page(browser.get(app.url(path)).query(&[("token", token)]).send().await.expect("send")).await
}

/// Presses the button of a link's page (its form, with the browser's CSRF cookie).
pub(crate) async fn press(app: &TestApp, browser: &reqwest::Client, path: &str, html: &str) -> (u16, String) {
    let form = oidc::hidden_fields(html);
    oidc::page(browser.post(app.url(path)).form(&form).send().await.expect("send")).await
}

async fn me(app: &TestApp, user: &TestUser) -> Value {
    let session = app.login(user).await;
    let resp = app.call(Method::GET, "/api/v1/user_roles/me", Some(&session.access), None).await;
    resp.json().await.expect("json")
}

const PAGE: &str = "/account/verify-email";
const API: &str = "/api/v1/auth/email/verify";

#[tokio::test]
async fn signup_mails_a_link_whose_page_shows_a_button_and_whose_post_verifies_the_address() {
    // Arrange
    let (app, inbox) = mail_app(&[]).await;
    let Fixture { app, rp, user, verifier, challenge, browser } = oidc::fixture(app, json!({})).await;
    let mail = inbox.mail(&user.email, VERIFY, 1).await;
    assert!(mail.html.contains("href=\"http"), "an HTML body with the link too");
    let token = mail.link_param(PAGE, "token");
    assert_eq!(me(&app, &user).await["email_verified"], false);

    // Act: the page, twice (a mail scanner), then its button.
    for _ in 0..2 {
        let (status, html) = open_link(&app, &browser, PAGE, &token).await;
        assert_eq!(status, 200, "{html}");
        assert!(html.contains("<button type=\"submit\"") && html.contains("Verify"), "{html}");
    }
    let unspent: bool =
        app.db_value("SELECT used_at IS NULL FROM account_tokens WHERE user_id = $1::text::uuid", &[&user.id]).await;
    assert!(unspent, "a GET never spends the token");
    let (_, html) = open_link(&app, &browser, PAGE, &token).await;
    let (status, done) = press(&app, &browser, PAGE, &html).await;

    // Assert
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("verified"), "{done}");
    assert_eq!(me(&app, &user).await["email_verified"], true);
    assert_eq!(app.security_events("email_verified").await, 1);
    let back = oidc::code_for(&app, &browser, &rp, &user, &challenge).await;
    let tokens: Value = oidc::exchange(&app, &rp, &back["code"], &verifier).await.json().await.expect("json");
    assert_eq!(claims(tokens["id_token"].as_str().expect("id token"))["email_verified"], true);
    let info: Value =
        oidc::userinfo(&app, tokens["access_token"].as_str().expect("access")).await.json().await.expect("json");
    assert_eq!(info["email_verified"], true);
}

#[tokio::test]
async fn a_verification_shows_at_once_to_a_token_already_cached() {
    // Arrange: the standing of a signed-in user, cached by a first call.
    let (app, inbox) = mail_app(&[]).await;
    let user = app.new_user().await;
    let session = app.login(&user).await;
    let me = |access: String| {
        let app = &app;
        async move {
            let resp = app.call(Method::GET, "/api/v1/user_roles/me", Some(&access), None).await;
            resp.json::<Value>().await.expect("json")
        }
    };
    assert_eq!(me(session.access.clone()).await["email_verified"], false);

    // Act
    let token = inbox.mail(&user.email, VERIFY, 1).await.link_param(PAGE, "token");
    assert_eq!(post_token(&app, API, &token).await.status(), 204);

    // Assert
    assert_eq!(me(session.access.clone()).await["email_verified"], true);
}

#[tokio::test]
async fn a_spent_token_is_refused_the_second_time_on_the_api_and_on_the_page() {
    let (app, inbox) = mail_app(&[]).await;
    let user = app.new_user().await;
    let token = inbox.mail(&user.email, VERIFY, 1).await.link_param(PAGE, "token");

    assert_eq!(post_token(&app, API, &token).await.status(), 204);

    assert_error(post_token(&app, API, &token).await, 400, "invalid_token").await;
    let (status, html) = open_link(&app, &oidc::browser(), PAGE, &token).await;
    assert_eq!(status, 400, "{html}");
    assert!(!html.contains("<button"), "no button for a used link: {html}");
}

#[tokio::test]
async fn unknown_tampered_expired_and_other_purpose_tokens_are_refused_alike() {
    // Arrange
    let (app, inbox) = mail_app(&[]).await;
    let (user, session) = app.user_session().await;
    let token = inbox.mail(&user.email, VERIFY, 1).await.link_param(PAGE, "token");
    let change = json!({ "new_email": format!("new-{}", user.email), "password": user.password });
    let resp = app.call(Method::POST, "/api/v1/users/email/change", Some(&session.access), Some(&change)).await;
    assert_eq!(resp.status(), 202);
    let other_purpose = inbox.mail(&format!("new-{}", user.email), CHANGE, 1).await.link_param("/account/", "token");
    let mut tampered = token.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let unknown = "A".repeat(43);

    // Act / Assert
    for bad in [unknown.as_str(), tampered.as_str(), other_purpose.as_str(), "", "not a token", "%00"] {
        let body = assert_error(post_token(&app, API, bad).await, 400, "invalid_token").await;
        assert_eq!(body["detail"], "the link is invalid or has expired", "one answer for every reason");
        let (status, _) = open_link(&app, &oidc::browser(), PAGE, bad).await;
        assert_eq!(status, 400, "the page of {bad:?}");
    }
    app.db()
        .await
        .execute(
            "UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE purpose = 'verify_email'",
            &[],
        )
        .await
        .expect("expire");
    assert_error(post_token(&app, API, &token).await, 400, "invalid_token").await;
    let (status, _) = open_link(&app, &oidc::browser(), PAGE, &token).await;
    assert_eq!(status, 400, "an expired link");
    assert_eq!(me(&app, &user).await["email_verified"], false);
    assert_error(app.post_json(API, &json!({})).await, 422, "invalid_field").await;
}

#[tokio::test]
async fn the_pages_button_needs_its_csrf_token() {
    let (app, inbox) = mail_app(&[]).await;
    let user = app.new_user().await;
    let token = inbox.mail(&user.email, VERIFY, 1).await.link_param(PAGE, "token");
    let browser = oidc::browser();
    let (_, html) = open_link(&app, &browser, PAGE, &token).await;

    let forged = [("token", token.as_str()), ("csrf_token", "A".repeat(43).as_str())].map(|(k, v)| (k, v.to_string()));
    let (status, _) = oidc::page(browser.post(app.url(PAGE)).form(&forged).send().await.expect("send")).await;
    let (fresh_status, _) = press(&app, &oidc::browser(), PAGE, &html).await;

    assert_eq!(status, 403, "a wrong CSRF token");
    assert_eq!(fresh_status, 403, "the form without the browser's cookie");
    assert_eq!(me(&app, &user).await["email_verified"], false);
}

#[tokio::test]
async fn resend_voids_the_older_link_and_sends_nothing_once_verified() {
    // Arrange
    let (app, inbox) = mail_app(&[]).await;
    let (user, session) = app.user_session().await;
    let first = inbox.mail(&user.email, VERIFY, 1).await.link_param(PAGE, "token");
    let resend = || app.call(Method::POST, "/api/v1/users/verify-email/resend", Some(&session.access), None);

    // Act
    assert_eq!(resend().await.status(), 202);
    let second = inbox.mail(&user.email, VERIFY, 2).await.link_param(PAGE, "token");

    // Assert
    assert_ne!(first, second);
    assert_error(post_token(&app, API, &first).await, 400, "invalid_token").await;
    assert_eq!(post_token(&app, API, &second).await.status(), 204);
    assert_eq!(resend().await.status(), 202, "a verified address is answered alike");
    assert_eq!(inbox.settled(&user.email).await.len(), 2, "and gets no mail");
    assert_eq!(app.call(Method::POST, "/api/v1/users/verify-email/resend", None, None).await.status(), 401);
}

#[tokio::test]
async fn resend_is_limited_per_account_with_retry_after() {
    let (app, inbox) = mail_app(&[("RATE_LIMIT_RECOVERY_ACCOUNT", "2/1h")]).await;
    let (user, session) = app.user_session().await;
    let resend = || app.call(Method::POST, "/api/v1/users/verify-email/resend", Some(&session.access), None);

    assert_eq!(resend().await.status(), 202);
    assert_eq!(resend().await.status(), 202);
    let refused = resend().await;

    assert!(refused.headers().contains_key("retry-after"));
    assert_error(refused, 429, "rate_limited").await;
    inbox.mail(&user.email, VERIFY, 3).await;
    assert_eq!(inbox.settled(&user.email).await.len(), 3, "the signup's mail and two more");
}

#[tokio::test]
async fn require_verified_email_refuses_a_login_only_after_the_right_password() {
    // Arrange
    let (app, inbox) = mail_app(&[("REQUIRE_VERIFIED_EMAIL", "true")]).await;
    let user = app.new_user().await;

    // Act / Assert: a wrong password is the usual answer, whoever asks.
    assert_error(app.login_json(&user.username, "wrong password here").await, 401, "unauthorized").await;
    let body = assert_error(app.login_json(&user.username, &user.password).await, 403, "email_unverified").await;
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("not verified")));
    let fresh = inbox.mail(&user.email, VERIFY, 2).await.link_param(PAGE, "token");
    assert_eq!(post_token(&app, API, &fresh).await.status(), 204, "the refusal mailed a fresh link");
    assert_eq!(app.login_json(&user.username, &user.password).await.status(), 200);
}

#[tokio::test]
async fn the_hosted_sign_in_of_an_unverified_account_says_to_check_the_inbox() {
    // Arrange: an admin (verified by hand) registers the client; the user is not verified.
    let app = spawn_app_setting("REQUIRE_VERIFIED_EMAIL", "true").await;
    let admin = app.new_user().await;
    app.db()
        .await
        .execute("UPDATE users SET email_verified = true WHERE username = $1", &[&admin.username])
        .await
        .expect("verify the admin");
    let rp = oidc::register(&app, &app.admin_session_for(&admin).await, json!({})).await;
    let user = app.new_user().await;
    let (_, challenge) = oidc::pkce();
    let browser = oidc::browser();
    let (_, html) = oidc::page(oidc::authorize(&app, &browser, &oidc::request(&rp, &challenge, &[])).await).await;

    // Act
    let (wrong, wrong_page) =
        oidc::page(oidc::sign_in(&app, &browser, &html, &user.username, "nope nope nope").await).await;
    let (status, page) = oidc::page(oidc::sign_in(&app, &browser, &html, &user.username, &user.password).await).await;

    // Assert
    assert_eq!(wrong, 400);
    assert!(!wrong_page.contains("not verified"));
    assert_eq!(status, 403);
    assert!(page.contains("not verified") && page.contains("inbox"), "{page}");
    assert!(!page.contains("Set-Cookie") && !browser_signed_in(&page), "no session");
}

fn browser_signed_in(page: &str) -> bool {
    page.contains("Allow access?")
}
