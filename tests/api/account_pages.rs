//! The hosted sign-up page, and the password policy on every way a password is set.

use serde_json::json;

use crate::helpers::unique_name;
use crate::mail::MailSink;
use crate::password_reset::{app_mailing_to, csrf_cookie, forgot, mailed_token, post_form, reset};

const PASSWORD: &str = "violet tractor umbrella 42";

#[tokio::test]
async fn the_sign_up_page_creates_the_account_and_mails_its_verification_link() {
    let sink = MailSink::start().await;
    let app = app_mailing_to(&sink, &[]).await;
    let page = app.get("/account/sign-up").await;
    assert_eq!(page.status(), 200);
    let csrf = csrf_cookie(&page);
    let name = unique_name("page");
    let email = format!("{name}@example.com");
    let form = [("csrf_token", csrf.as_str()), ("username", &name), ("email", &email), ("password", PASSWORD)];

    let forged = post_form(&app, "/account/sign-up", &"x".repeat(43), &form).await;
    assert_eq!(forged.status(), 403, "a form without the browser's CSRF token changes nothing");
    let count = "SELECT count(*) FROM users WHERE username = $1";
    assert_eq!(app.db_value::<i64>(count, &[&name]).await, 0);

    let created = post_form(&app, "/account/sign-up", &csrf, &form).await;
    assert_eq!(created.status(), 200);
    assert!(created.text().await.expect("a page").contains("Check your mail"));
    assert_eq!(app.db_value::<i64>(count, &[&name]).await, 1);
    let mail = sink.wait_for_subject(&email, "Verify").await;
    assert!(mail.link("/account/verify-email").contains("/account/verify-email?token="));

    let again = post_form(&app, "/account/sign-up", &csrf, &form).await;
    assert_eq!(again.status(), 409, "a taken name is said on the form, as the API says it");
    assert!(!again.text().await.expect("a page").contains(PASSWORD), "the password is never echoed");
}

#[tokio::test]
async fn the_sign_up_page_shows_a_refused_password_on_the_form() {
    let app = crate::helpers::spawn_app().await;
    let page = app.get("/account/sign-up").await;
    let csrf = csrf_cookie(&page);
    let name = unique_name("page");
    let email = format!("{name}@example.com");
    let form = [("csrf_token", csrf.as_str()), ("username", &name), ("email", &email), ("password", "Password1")];
    let refused = post_form(&app, "/account/sign-up", &csrf, &form).await;
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.expect("a page").contains("too common"));
    let users: i64 = app.db_value("SELECT count(*) FROM users WHERE username = $1", &[&name]).await;
    assert_eq!(users, 0);
}

#[tokio::test]
async fn a_reset_refuses_a_listed_password_and_leaves_the_link_usable() {
    let sink = MailSink::start().await;
    let app = app_mailing_to(&sink, &[]).await;
    let user = app.new_user().await;
    assert_eq!(forgot(&app, &user.email).await.status(), 202);
    let token = mailed_token(&sink, &user.email, 1).await;

    let listed = reset(&app, &token, "Password1").await;
    assert_eq!(listed.status(), 422);
    let body: serde_json::Value = listed.json().await.expect("JSON");
    assert!(body["detail"].as_str().unwrap_or_default().contains("too common"), "{body}");

    assert_eq!(reset(&app, &token, PASSWORD).await.status(), 204, "a refused password spends no link");
    let login = app.login_json(&user.username, PASSWORD).await;
    assert_eq!(login.status(), 200, "{:?}", json!(login.text().await.ok()));
}
