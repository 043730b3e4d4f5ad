//! Email change (SPEC §9): the password checked like a password change's, a confirmation to the
//! new address and a notice to the old one, the change applied only on confirmation (once, even
//! under parallel confirmations), and the token alone saying which account changes.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, TestUser, assert_error, spawn_app, spawn_app_setting, unique_name};
use crate::oidc;
use crate::verify_email::{CHANGE, CHANGED, REQUESTED, VERIFY, mail_app, open_link, post_token, press};

const PAGE: &str = "/account/confirm-email-change";
const API: &str = "/api/v1/auth/email/change/confirm";

async fn request_change(app: &TestApp, session: &Session, new_email: &str, password: &str) -> reqwest::Response {
    let body = json!({ "new_email": new_email, "password": password });
    app.call(Method::POST, "/api/v1/users/email/change", Some(&session.access), Some(&body)).await
}

async fn me(app: &TestApp, session: &Session) -> Value {
    app.call(Method::GET, "/api/v1/user_roles/me", Some(&session.access), None).await.json().await.expect("json")
}

fn new_address(user: &TestUser) -> String {
    format!("moved-{}", user.email)
}

#[tokio::test]
async fn a_wrong_password_is_refused_counted_and_sends_nothing() {
    let (app, inbox) = mail_app(&[]).await;
    let (user, session) = app.user_session().await;

    let resp = request_change(&app, &session, &new_address(&user), "not the password").await;

    assert_error(resp, 403, "forbidden").await;
    assert_eq!(app.security_events("password_check_failed").await, 1);
    assert!(inbox.settled(&new_address(&user)).await.is_empty());
    assert_eq!(inbox.settled(&user.email).await.len(), 1, "only the signup's verification");
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_like_a_password_change() {
    let app = spawn_app_setting("LOCKOUT_THRESHOLD", "2").await;
    let (user, session) = app.user_session().await;
    for _ in 0..2 {
        assert_eq!(request_change(&app, &session, &new_address(&user), "not the password").await.status(), 403);
    }

    let locked = request_change(&app, &session, &new_address(&user), &user.password).await;

    assert_eq!(locked.status(), 429, "locked: even the right password is refused");
    assert_eq!(app.login_json(&user.username, &user.password).await.status(), 429, "the login shares the lockout");
}

#[tokio::test]
async fn confirming_applies_the_change_verified_and_tells_the_old_address() {
    // Arrange
    let (app, inbox) = mail_app(&[]).await;
    let (user, session) = app.user_session().await;
    let new_email = new_address(&user);

    // Act: the request, then the link's page and its button.
    assert_eq!(request_change(&app, &session, &new_email, &user.password).await.status(), 202);
    let requested = inbox.mail(&user.email, REQUESTED, 1).await;
    assert!(requested.text.contains(&new_email), "the notice names the new address");
    assert!(!requested.text.contains("http"), "and carries no link: {}", requested.text);
    assert_eq!(me(&app, &session).await["email"], user.email, "nothing changes before the confirmation");
    let token = inbox.mail(&new_email, CHANGE, 1).await.link_param(PAGE, "token");
    let browser = oidc::browser();
    let (status, html) = open_link(&app, &browser, PAGE, &token).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(me(&app, &session).await["email"], user.email, "the GET changed nothing");
    let (status, done) = press(&app, &browser, PAGE, &html).await;

    // Assert
    assert_eq!(status, 200, "{done}");
    let now = me(&app, &session).await;
    assert_eq!((now["email"].as_str(), now["email_verified"].as_bool()), (Some(new_email.as_str()), Some(true)));
    let notice = inbox.mail(&user.email, CHANGED, 1).await;
    assert!(notice.text.contains(&new_email));
    assert_eq!(app.security_events("email_changed").await, 1);
    assert_eq!(app.login_json(&new_email, &user.password).await.status(), 200, "the new address signs in");
    assert_eq!(app.login_json(&user.email, &user.password).await.status(), 401, "the old one no longer");
    let old_link = inbox.mail(&user.email, VERIFY, 1).await.link_param("/account/verify-email", "token");
    assert_error(post_token(&app, "/api/v1/auth/email/verify", &old_link).await, 400, "invalid_token").await;
}

#[tokio::test]
async fn a_newer_request_voids_the_older_link() {
    let (app, inbox) = mail_app(&[]).await;
    let (user, session) = app.user_session().await;
    assert_eq!(request_change(&app, &session, "first-choice@example.com", &user.password).await.status(), 202);
    let older = inbox.mail("first-choice@example.com", CHANGE, 1).await.link_param(PAGE, "token");

    assert_eq!(request_change(&app, &session, "second-choice@example.com", &user.password).await.status(), 202);

    assert_error(post_token(&app, API, &older).await, 400, "invalid_token").await;
    let newer = inbox.mail("second-choice@example.com", CHANGE, 1).await.link_param(PAGE, "token");
    assert_eq!(post_token(&app, API, &newer).await.status(), 204);
    assert_eq!(me(&app, &session).await["email"], "second-choice@example.com");
}

#[tokio::test]
async fn parallel_confirmations_apply_the_change_once() {
    let (app, inbox) = mail_app(&[]).await;
    let (user, session) = app.user_session().await;
    let new_email = new_address(&user);
    assert_eq!(request_change(&app, &session, &new_email, &user.password).await.status(), 202);
    let token = inbox.mail(&new_email, CHANGE, 1).await.link_param(PAGE, "token");

    let answers = futures::future::join_all((0..8).map(|_| post_token(&app, API, &token))).await;

    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 204).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 204 || *s == 400), "{statuses:?}");
    assert_eq!(app.security_events("email_changed").await, 1);
    inbox.mail(&user.email, CHANGED, 1).await;
    let notices = inbox.settled(&user.email).await.into_iter().filter(|m| m.subject == CHANGED).count();
    assert_eq!(notices, 1);
}

#[tokio::test]
async fn the_token_says_which_account_changes_whatever_bearer_comes_with_it() {
    // Arrange: Mallory holds her own Bearer and asks to move her account to Alice's inbox.
    let (app, inbox) = mail_app(&[]).await;
    let (alice, alice_session) = app.user_session().await;
    let (mallory, mallory_session) = app.user_session().await;
    let target = new_address(&alice);
    assert_eq!(request_change(&app, &alice_session, &target, &alice.password).await.status(), 202);
    let alices_token = inbox.mail(&target, CHANGE, 1).await.link_param(PAGE, "token");

    // Act: Mallory confirms Alice's token with her own Bearer.
    let body = json!({ "token": alices_token });
    let resp = app.call(Method::POST, API, Some(&mallory_session.access), Some(&body)).await;

    // Assert: Alice's account moved, Mallory's did not.
    assert_eq!(resp.status(), 204);
    assert_eq!(me(&app, &alice_session).await["email"], target);
    assert_eq!(me(&app, &mallory_session).await["email"], mallory.email);
}

#[tokio::test]
async fn an_address_taken_before_the_confirmation_is_a_conflict_that_changes_nothing() {
    // Arrange: the request is accepted (it tells nothing about the address) ...
    let (app, inbox) = mail_app(&[]).await;
    let (user, session) = app.user_session().await;
    let wanted = format!("wanted-{}", user.email);
    assert_eq!(request_change(&app, &session, &wanted, &user.password).await.status(), 202);
    let token = inbox.mail(&wanted, CHANGE, 1).await.link_param(PAGE, "token");
    // ... and another account takes the address before the confirmation.
    assert_eq!(app.signup(&unique_name("other"), &wanted, &user.password).await.status(), 201);

    // Act
    let resp = post_token(&app, API, &token).await;
    let (status, _) = open_link(&app, &oidc::browser(), PAGE, &token).await;

    // Assert
    assert_error(resp, 409, "conflict").await;
    assert_eq!(status, 200, "the token is still unspent");
    assert_eq!(me(&app, &session).await["email"], user.email);
    assert_eq!(app.security_events("email_changed").await, 0);
}

#[tokio::test]
async fn a_taken_address_is_accepted_like_any_other_when_asked_for() {
    let app = spawn_app().await;
    let (user, session) = app.user_session().await;
    let other = app.new_user().await;

    let taken = request_change(&app, &session, &other.email, &user.password).await;
    let free = request_change(&app, &session, &format!("free-{}", user.email), &user.password).await;

    assert_eq!((taken.status(), free.status()), (reqwest::StatusCode::ACCEPTED, reqwest::StatusCode::ACCEPTED));
    assert_eq!(taken.text().await.expect("body"), free.text().await.expect("body"));
}

#[tokio::test]
async fn the_accounts_own_address_or_no_address_is_an_invalid_field() {
    let app = spawn_app().await;
    let (user, session) = app.user_session().await;

    assert_error(
        request_change(&app, &session, &user.email.to_uppercase(), &user.password).await,
        422,
        "invalid_field",
    )
    .await;
    assert_error(request_change(&app, &session, "no-at-sign", &user.password).await, 422, "invalid_field").await;
    let resp = app.call(Method::POST, "/api/v1/users/email/change", None, Some(&json!({}))).await;
    assert_eq!(resp.status(), 401);
}
