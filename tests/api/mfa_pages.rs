//! Second factors in the hosted pages and in OpenID Connect: the second-factor page of the
//! browser flow (no session before the factor), `acr_values` and `require_mfa` (step-up, set-up
//! first, `prompt=none`), discovery, the passkey script and the pages' policy, the security page.
//!
//! The tests marked `#[ignore]` need `flows::totp` working (its bodies live with the TOTP
//! routes); run them with `-- --ignored mfa_pages` once they are in.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, claims, spawn_app};
use crate::oidc::{Fixture, authorize, exchange, fixture, hidden_fields, page, redirected, register, request, sign_in};

const MFA: &str = "http://schemas.openid.net/pape/policies/2007/06/multi-factor";
const PASSWORD: &str = "urn:auth-service:acr:password";

/// Gives `user` a confirmed authenticator app directly in the database (the page tests that
/// do not check a code need no real secret).
async fn give_totp(app: &TestApp, user: &TestUser) {
    let id: uuid::Uuid = user.id.parse().expect("uuid");
    app.db()
        .await
        .execute(
            "INSERT INTO mfa_totp (user_id, secret_sealed, key_id, confirmed_at) VALUES ($1, '\\x00', 'test1', now())",
            &[&id],
        )
        .await
        .expect("insert");
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().expect("ascii").to_string()).collect()
}

fn has_session_cookie(resp: &reqwest::Response) -> bool {
    set_cookies(resp).iter().any(|c| c.starts_with("session=") && !c.starts_with("session=;"))
}

/// The `<form>`s of a page, each as its action and hidden fields.
fn forms(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    html.split("<form ")
        .skip(1)
        .map(|rest| {
            let action = rest.split("action=\"").nth(1).and_then(|a| a.split('"').next()).unwrap_or_default();
            let body = rest.split("</form>").next().unwrap_or_default();
            (action.to_string(), hidden_fields(&format!("<form {body}")))
        })
        .collect()
}

fn form_at(html: &str, action: &str) -> Vec<(String, String)> {
    forms(html).into_iter().find(|(a, _)| a == action).map(|(_, f)| f).unwrap_or_else(|| panic!("{action}: {html}"))
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn discovery_lists_the_acr_values_and_the_amr_and_acr_claims() {
    let app = spawn_app().await;
    let (status, doc) = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
    assert_eq!(doc["acr_values_supported"], json!([PASSWORD, MFA]));
    let claims = doc["claims_supported"].as_array().expect("claims");
    assert!(claims.contains(&json!("amr")) && claims.contains(&json!("acr")), "{claims:?}");
}

#[tokio::test]
async fn require_mfa_is_client_metadata_that_round_trips_through_create_update_and_show() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let plain = register(&app, &admin, json!({})).await;
    assert_eq!(plain.body["require_mfa"], false, "off unless asked: {}", plain.body);
    let strict = register(&app, &admin, json!({ "require_mfa": true })).await;
    assert_eq!(strict.body["require_mfa"], true);

    let path = format!("/api/v1/clients/{}", strict.id);
    let resp = app.get_with(&path, &admin.access).await;
    assert_eq!(resp.status(), 200);
    let shown: Value = resp.json().await.expect("json");
    assert_eq!(shown["require_mfa"], true);

    let mut update = shown.clone();
    update["require_mfa"] = json!(false);
    for k in ["client_id", "client_id_issued_at", "client_secret"] {
        update.as_object_mut().expect("object").remove(k);
    }
    let resp = app.call(reqwest::Method::PUT, &path, Some(&admin.access), Some(&update)).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let shown: Value = app.get_with(&path, &admin.access).await.json().await.expect("json");
    assert_eq!(shown["require_mfa"], false);

    let refused = crate::oauth::try_register(&app, &admin, &json!({ "client_name": "x", "require_mfa": "yes" })).await;
    assert!(refused.status().is_client_error(), "a require_mfa that is not a boolean: {}", refused.status());
}

#[tokio::test]
async fn an_account_with_a_second_factor_gets_the_second_factor_page_and_no_session() {
    let Fixture { app, rp, user, challenge, browser, .. } = fixture(spawn_app().await, json!({})).await;
    give_totp(&app, &user).await;

    let (_, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    let resp = sign_in(&app, &browser, &html, &user.username, &user.password).await;
    assert!(!has_session_cookie(&resp), "no session before the second factor: {:?}", set_cookies(&resp));
    let (status, html) = page(resp).await;
    assert_eq!(status, 200);
    assert!(html.contains("Two-step verification") && html.contains("name=\"code\""), "{html}");
    let fields = form_at(&html, "/oauth2/authorize/mfa");
    let token = field(&fields, "mfa_token").expect("the pending step's token");
    assert!(token.len() >= 43, "a 256-bit token");
    assert!(field(&fields, "csrf_token").is_some() && field(&fields, "client_id") == Some(rp.id.as_str()));
    assert!(!html.contains("data-webauthn"), "no passkey button without a passkey");
    // The account is not signed in: the authorization endpoint still asks for a sign-in.
    let (_, again) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    assert!(again.contains("<h1>Sign in</h1>"), "{again}");
    // No session row was written.
    let id: uuid::Uuid = user.id.parse().expect("uuid");
    let row = app.db().await.query_one("SELECT count(*) FROM refresh_families WHERE user_id = $1", &[&id]).await;
    assert_eq!(row.expect("count").get::<_, i64>(0), 0);
}

#[tokio::test]
async fn a_second_factor_form_with_a_dead_token_or_without_its_csrf_token_signs_nobody_in() {
    let Fixture { app, rp, user, challenge, browser, .. } = fixture(spawn_app().await, json!({})).await;
    give_totp(&app, &user).await;
    let (_, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    let (_, second) = page(sign_in(&app, &browser, &html, &user.username, &user.password).await).await;
    let fields = form_at(&second, "/oauth2/authorize/mfa");

    // Without the CSRF token: 403, before anything is spent.
    let mut no_csrf: Vec<(String, String)> = fields.iter().filter(|(k, _)| k != "csrf_token").cloned().collect();
    no_csrf.push(("code".into(), "123456".into()));
    let resp = browser.post(app.url("/oauth2/authorize/mfa")).form(&no_csrf).send().await.expect("send");
    assert_eq!(resp.status(), 403);

    // An mfa_token that names no step: back to the sign-in page, no session.
    let mut dead: Vec<(String, String)> = fields.iter().filter(|(k, _)| k != "mfa_token").cloned().collect();
    dead.push(("mfa_token".into(), "A".repeat(43)));
    dead.push(("code".into(), "123456".into()));
    let resp = browser.post(app.url("/oauth2/authorize/mfa")).form(&dead).send().await.expect("send");
    assert!(!has_session_cookie(&resp));
    let (status, html) = page(resp).await;
    assert_eq!(status, 400);
    assert!(html.contains("<h1>Sign in</h1>") && html.contains("Please sign in again"), "{html}");

    // A method that is not one: a 400 page.
    let mut odd = fields.clone();
    odd.push(("code".into(), "123456".into()));
    odd.push(("method".into(), "sms".into()));
    let resp = browser.post(app.url("/oauth2/authorize/mfa")).form(&odd).send().await.expect("send");
    assert_eq!(resp.status(), 400);
    assert!(!has_session_cookie(&resp));
}

#[tokio::test]
async fn acr_values_are_carried_bounded_and_a_user_without_a_factor_is_asked_to_set_one_up() {
    let Fixture { app, rp, user, challenge, browser, .. } =
        fixture(spawn_app().await, json!({ "first_party": true })).await;
    let acr = format!("{MFA} urn:other");

    // Too long: the client hears it.
    let long = "x".repeat(1025);
    let resp = authorize(&app, &browser, &request(&rp, &challenge, &[("acr_values", long.as_str())])).await;
    assert_eq!(redirected(&resp)["error"], "invalid_request");

    // The value travels through the sign-in form; with no factor the user is asked to set one up.
    let (_, html) =
        page(authorize(&app, &browser, &request(&rp, &challenge, &[("acr_values", acr.as_str())])).await).await;
    assert_eq!(field(&hidden_fields(&html), "acr_values"), Some(acr.as_str()));
    let resp = sign_in(&app, &browser, &html, &user.username, &user.password).await;
    assert!(has_session_cookie(&resp), "the password opens a session (without mfa)");
    let (status, enrol) = page(resp).await;
    assert_eq!(status, 200);
    assert!(enrol.contains("Set up two-step verification"), "{enrol}");
    let link = enrol.split("href=\"/account/security?continue=").nth(1).expect("a link to the security page");
    assert!(link.starts_with("%2Foauth2%2Fauthorize%3F"), "it leads back to the request: {link}");

    // prompt=none: interaction_required, never a page.
    let params = request(&rp, &challenge, &[("acr_values", acr.as_str()), ("prompt", "none")]);
    let resp = authorize(&app, &browser, &params).await;
    assert_eq!(redirected(&resp)["error"], "interaction_required");

    // The same session without acr_values gets its code at once.
    let resp = authorize(&app, &browser, &request(&rp, &challenge, &[("prompt", "none")])).await;
    let code = redirected(&resp);
    assert!(code.contains_key("code"), "{code:?}");
}

#[tokio::test]
async fn a_session_without_a_second_factor_does_not_reach_an_mfa_request_of_a_user_who_has_one() {
    let Fixture { app, rp, user, challenge, browser, .. } =
        fixture(spawn_app().await, json!({ "first_party": true })).await;
    // Signed in with the password, before the factor was set up.
    let (_, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    let resp = sign_in(&app, &browser, &html, &user.username, &user.password).await;
    assert_eq!(resp.status(), 303);
    give_totp(&app, &user).await;

    let params = request(&rp, &challenge, &[("acr_values", MFA), ("prompt", "none")]);
    assert_eq!(redirected(&authorize(&app, &browser, &params).await)["error"], "login_required");
    // Without prompt=none: the sign-in page again, then the second factor.
    let (_, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[("acr_values", MFA)])).await).await;
    assert!(html.contains("<h1>Sign in</h1>") && html.contains(&format!("value=\"{}\"", user.username)), "{html}");
    let (_, second) = page(sign_in(&app, &browser, &html, &user.username, &user.password).await).await;
    assert!(second.contains("Two-step verification"), "{second}");
}

#[tokio::test]
async fn a_client_that_requires_mfa_asks_for_it_on_every_request() {
    let Fixture { app, rp, user, challenge, browser, .. } =
        fixture(spawn_app().await, json!({ "first_party": true, "require_mfa": true })).await;
    let (_, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    let (_, enrol) = page(sign_in(&app, &browser, &html, &user.username, &user.password).await).await;
    assert!(enrol.contains("Set up two-step verification"), "{enrol}");
    let resp = authorize(&app, &browser, &request(&rp, &challenge, &[("prompt", "none")])).await;
    assert_eq!(redirected(&resp)["error"], "interaction_required");
}

#[tokio::test]
async fn the_passkey_script_is_served_under_its_hash_for_a_year_and_old_names_are_404() {
    let Fixture { app, rp, challenge, browser, .. } = fixture(spawn_app().await, json!({})).await;
    let resp = authorize(&app, &browser, &request(&rp, &challenge, &[])).await;
    let csp = resp.headers()["content-security-policy"].to_str().expect("ascii").to_string();
    assert!(csp.contains("script-src 'self';") && csp.contains("default-src 'none'"), "{csp}");
    let (_, html) = page(resp).await;
    let src = html.split("<script src=\"").nth(1).and_then(|r| r.split('"').next()).expect("a script");
    let hash = src.strip_prefix("/oauth2/assets/webauthn-").and_then(|n| n.strip_suffix(".js")).expect(src);
    assert!(hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{src}");
    assert!(html.contains("Sign in with a passkey") && html.contains("data-webauthn=\"get\""));

    let js = browser.get(app.url(src)).send().await.expect("send");
    assert_eq!(js.status(), 200);
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(js.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(js.headers()["x-content-type-options"], "nosniff");
    assert!(js.text().await.expect("text").contains("navigator.credentials"));
    for other in ["/oauth2/assets/webauthn.js", "/oauth2/assets/webauthn-0000000000000000.js"] {
        assert_eq!(browser.get(app.url(other)).send().await.expect("send").status(), 404, "{other}");
    }
}

#[tokio::test]
async fn the_passkey_start_needs_the_csrf_token_and_answers_json() {
    let Fixture { app, rp, challenge, browser, .. } = fixture(spawn_app().await, json!({})).await;
    let (_, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    let resp = browser
        .post(app.url("/oauth2/authorize/passkey/start"))
        .form(&[("csrf_token", "A".repeat(43))])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_csrf_token");
    // The finish without a ceremony is a 400 page, whatever else it carries.
    let mut form = hidden_fields(&html);
    form.retain(|(k, _)| k != "ceremony" && k != "credential");
    form.push(("credential".into(), "{}".into()));
    let resp = browser.post(app.url("/oauth2/authorize/passkey")).form(&form).send().await.expect("send");
    assert_eq!(resp.status(), 400);
    assert!(!has_session_cookie(&resp));
}

#[tokio::test]
async fn the_security_page_needs_a_browser_session_and_every_form_its_csrf_token() {
    let Fixture { app, rp, user, challenge, browser, .. } =
        fixture(spawn_app().await, json!({ "first_party": true })).await;
    let (status, html) = page(browser.get(app.url("/account/security")).send().await.expect("send")).await;
    assert_eq!(status, 200);
    assert!(html.contains("action=\"/account/security/sign-in\"") && html.contains("name=\"password\""), "{html}");
    let resp = browser.post(app.url("/account/security/totp")).form(&[("x", "y")]).send().await.expect("send");
    assert_eq!(resp.status(), 403, "a form without its CSRF token");

    let (_, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    let resp = sign_in(&app, &browser, &html, &user.username, &user.password).await;
    let session = set_cookies(&resp).into_iter().find(|c| c.starts_with("session=")).expect("a session cookie");
    assert!(session.contains("Path=/;"), "the account pages read the session too: {session}");
    let resp = browser.get(app.url("/account/security")).send().await.expect("send");
    let csp = resp.headers()["content-security-policy"].to_str().expect("ascii").to_string();
    let (status, html) = page(resp).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&user.username) && html.contains("Set up an authenticator app"), "{html}");
    assert!(html.contains("data-webauthn=\"create\"") && csp.contains("script-src 'self'"));
    for (action, fields) in forms(&html) {
        assert!(field(&fields, "csrf_token").is_some(), "{action}");
    }
    // A continue that leads anywhere but the authorization endpoint is dropped.
    let resp = browser
        .get(app.url("/account/security"))
        .query(&[("continue", "https://evil.example/")])
        .send()
        .await
        .expect("send");
    let (_, html) = page(resp).await;
    assert!(!html.contains("evil.example"), "{html}");
    assert!(!html.contains("Continue to the application"), "no factor yet, nowhere to continue: {html}");

    // The enrol-first page's link: `continue` is carried in every form, and once the account has
    // a factor the page links back to the authorization request.
    let back = format!("/oauth2/authorize?client_id={}&acr_values=x", rp.id);
    give_totp(&app, &user).await;
    let resp = browser.get(app.url("/account/security")).query(&[("continue", &back)]).send().await.expect("send");
    let (status, html) = page(resp).await;
    assert_eq!(status, 200);
    for (action, fields) in forms(&html) {
        assert_eq!(field(&fields, "continue"), Some(back.as_str()), "{action}");
    }
    let escaped = back.replace('&', "&#38;");
    assert!(
        html.contains(&format!("<a class=\"button\" href=\"{escaped}\">Continue to the application</a>")),
        "{html}"
    );
    assert!(html.contains("An authenticator app is set up"), "{html}");
}

/// The TOTP code (RFC 6238: SHA-1, 6 digits, 30 s) of a base32 `secret` at `at`.
fn totp_code(secret: &str, at: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).expect("base32");
    let totp = totp_rs::Builder::new().with_secret(secret).build_noncompliant();
    totp.generate(at).to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs()
}

/// Waits for the next 30-second step (a code is accepted once per step).
async fn next_step() {
    let wait = 30 - now() % 30;
    tokio::time::sleep(std::time::Duration::from_secs(wait + 1)).await;
}

#[tokio::test]
async fn mfa_pages_totp_set_up_on_the_security_page_then_signs_in_with_amr_otp_mfa_and_the_mfa_acr() {
    let Fixture { app, rp, user, challenge, verifier, browser } =
        fixture(spawn_app().await, json!({ "first_party": true })).await;
    // Signed in with the password; set up the app on the security page.
    let (_, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    assert_eq!(sign_in(&app, &browser, &html, &user.username, &user.password).await.status(), 303);
    let (_, security) = page(browser.get(app.url("/account/security")).send().await.expect("send")).await;
    let form = form_at(&security, "/account/security/totp");
    let (status, setup) =
        page(browser.post(app.url("/account/security/totp")).form(&form).send().await.expect("send")).await;
    assert_eq!(status, 200, "{setup}");
    assert!(setup.contains("<svg"), "the QR code, inline");
    let secret =
        setup.split("id=\"totp-secret\">").nth(1).and_then(|r| r.split('<').next()).expect("the key").to_string();
    let mut form = form_at(&setup, "/account/security/totp/confirm");
    form.push(("code".into(), totp_code(&secret, now())));
    let (status, codes) =
        page(browser.post(app.url("/account/security/totp/confirm")).form(&form).send().await.expect("send")).await;
    assert_eq!(status, 200, "{codes}");
    assert_eq!(codes.matches("<li><code>").count(), 10, "ten recovery codes, shown once: {codes}");

    // A new browser: password, then the second-factor page.
    let other = crate::oidc::browser();
    let (_, html) = page(authorize(&app, &other, &request(&rp, &challenge, &[("acr_values", MFA)])).await).await;
    let resp = sign_in(&app, &other, &html, &user.username, &user.password).await;
    assert!(!has_session_cookie(&resp));
    let (_, second) = page(resp).await;
    let fields = form_at(&second, "/oauth2/authorize/mfa");
    // A wrong code: the page again, with its error.
    let mut wrong = fields.clone();
    wrong.push(("code".into(), "000000".into()));
    let resp = other.post(app.url("/oauth2/authorize/mfa")).form(&wrong).send().await.expect("send");
    assert!(!has_session_cookie(&resp));
    let (status, again) = page(resp).await;
    assert_eq!(status, 400);
    assert!(again.contains("That code is not right"), "{again}");
    // The right one (in a step after the one the confirmation used).
    next_step().await;
    let mut right = form_at(&again, "/oauth2/authorize/mfa");
    right.push(("code".into(), totp_code(&secret, now())));
    let resp = other.post(app.url("/oauth2/authorize/mfa")).form(&right).send().await.expect("send");
    assert!(has_session_cookie(&resp));
    let code = redirected(&resp)["code"].clone();
    let tokens: Value = exchange(&app, &rp, &code, &verifier).await.json().await.expect("json");
    let id = claims(tokens["id_token"].as_str().expect("id_token"));
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(id["acr"], MFA);
    // The step is single use: the same form again is the sign-in page.
    let resp = other.post(app.url("/oauth2/authorize/mfa")).form(&right).send().await.expect("send");
    let (_, html) = page(resp).await;
    assert!(html.contains("<h1>Sign in</h1>"), "{html}");

    // A recovery code works once, as the second factor.
    let recovery = codes.split("<li><code>").nth(1).and_then(|r| r.split('<').next()).expect("a code").to_string();
    let third = crate::oidc::browser();
    let (_, html) = page(authorize(&app, &third, &request(&rp, &challenge, &[])).await).await;
    let (_, second) = page(sign_in(&app, &third, &html, &user.username, &user.password).await).await;
    let mut form = form_at(&second, "/oauth2/authorize/mfa");
    form.push(("code".into(), recovery));
    form.push(("method".into(), "recovery_code".into()));
    let resp = third.post(app.url("/oauth2/authorize/mfa")).form(&form).send().await.expect("send");
    assert!(redirected(&resp).contains_key("code"));
}

#[tokio::test]
async fn the_security_page_signs_a_browser_in_itself_and_asks_an_account_with_an_app_for_its_code() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let browser = crate::oidc::browser();
    let (_, html) = page(browser.get(app.url("/account/security")).send().await.expect("send")).await;
    let mut form = form_at(&html, "/account/security/sign-in");

    // A wrong password: the form again, no session.
    let mut wrong = form.clone();
    wrong.extend([("username".into(), user.username.clone()), ("password".into(), "not it".into())]);
    let resp = browser.post(app.url("/account/security/sign-in")).form(&wrong).send().await.expect("send");
    assert!(!has_session_cookie(&resp));
    let (status, again) = page(resp).await;
    assert_eq!(status, 400);
    assert!(again.contains("Wrong username or password"), "{again}");

    // The right one: a session, and back to the page.
    form.extend([("username".into(), user.username.clone()), ("password".into(), user.password.clone())]);
    let resp = browser.post(app.url("/account/security/sign-in")).form(&form).send().await.expect("send");
    assert_eq!(resp.status(), 303);
    assert!(has_session_cookie(&resp));
    assert_eq!(resp.headers()["location"], "/account/security");
    let (status, html) = page(browser.get(app.url("/account/security")).send().await.expect("send")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Sign-in security") && html.contains(&user.username), "{html}");

    // An account with an authenticator app: the code is asked for, and no session comes before it.
    give_totp(&app, &user).await;
    let other = crate::oidc::browser();
    let (_, html) = page(other.get(app.url("/account/security")).send().await.expect("send")).await;
    let mut form = form_at(&html, "/account/security/sign-in");
    form.extend([("username".into(), user.username.clone()), ("password".into(), user.password.clone())]);
    let resp = other.post(app.url("/account/security/sign-in")).form(&form).send().await.expect("send");
    assert!(!has_session_cookie(&resp));
    let (status, second) = page(resp).await;
    assert_eq!(status, 200);
    let fields = form_at(&second, "/account/security/sign-in");
    assert!(field(&fields, "mfa_token").is_some() && second.contains("name=\"code\""), "{second}");
    // A step that is over: the password form again.
    let mut dead: Vec<(String, String)> = fields.iter().filter(|(k, _)| k != "mfa_token").cloned().collect();
    dead.extend([("mfa_token".into(), "A".repeat(43)), ("code".into(), "123456".into())]);
    let resp = other.post(app.url("/account/security/sign-in")).form(&dead).send().await.expect("send");
    assert!(!has_session_cookie(&resp));
    let (status, html) = page(resp).await;
    assert_eq!(status, 400);
    assert!(html.contains("Please sign in again") && html.contains("name=\"password\""), "{html}");
}
