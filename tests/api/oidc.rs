//! The OAuth 2.1 authorization server, part 2: the authorization endpoint, the hosted sign-in,
//! consent and sign-out pages, the authorization-code grant with PKCE, OpenID Connect ID tokens
//! and userinfo — driven as a browser drives them (cookies, forms, redirects not followed).

use std::collections::HashMap;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, TestUser, assert_error, claims, spawn_app, spawn_app_setting};
use crate::oauth::{Registered as Rp, token_basic, token_form};

pub(crate) const REDIRECT: &str = "https://app.example/callback";
pub(crate) const LOGOUT_REDIRECT: &str = "https://app.example/signed-out";
const SCOPE: &str = "openid profile email roles offline_access";

/// Registers a relying party for the code flow (`extra` adds to or replaces its metadata).
pub(crate) async fn register(app: &TestApp, admin: &Session, extra: Value) -> Rp {
    let mut metadata = json!({
        "client_name": "Example App",
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": [REDIRECT],
        "post_logout_redirect_uris": [LOGOUT_REDIRECT],
        "scope": SCOPE,
    });
    if let (Some(m), Some(e)) = (metadata.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    crate::oauth::register(app, admin, metadata).await
}

/// A browser: its own cookie jar, redirects left for the test to inspect.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// A PKCE verifier and its S256 challenge.
pub(crate) fn pkce() -> (String, String) {
    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let challenge = B64.encode(digest(&SHA256, verifier.as_bytes()).as_ref());
    (verifier, challenge)
}

/// The parameters of an authorization request; `extra` adds or replaces (an empty value
/// removes).
pub(crate) fn request(rp: &Rp, challenge: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", rp.id.as_str()),
        ("redirect_uri", REDIRECT),
        ("scope", SCOPE),
        ("state", "st-4711"),
        ("nonce", "n-0815"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        params.retain(|(name, _)| name != k);
        if !v.is_empty() {
            params.push((k.to_string(), v.to_string()));
        }
    }
    params
}

pub(crate) async fn authorize(
    app: &TestApp,
    browser: &reqwest::Client,
    params: &[(String, String)],
) -> reqwest::Response {
    browser.get(app.url("/oauth2/authorize")).query(params).send().await.expect("send")
}

/// Undoes the pages' escaping, whether it writes named (`&lt;`) or numeric (`&#60;`) references.
fn unescape(text: &str) -> String {
    let mut out = text.to_string();
    // `&` last, so that an escaped reference (`&amp;lt;`) stays the text `&lt;`.
    for (reference, c) in [
        ("&quot;", "\""),
        ("&#34;", "\""),
        ("&#39;", "'"),
        ("&lt;", "<"),
        ("&#60;", "<"),
        ("&gt;", ">"),
        ("&#62;", ">"),
        ("&amp;", "&"),
        ("&#38;", "&"),
    ] {
        out = out.replace(reference, c);
    }
    out
}

/// The hidden fields of a page's form.
pub(crate) fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.strip_prefix("name=\"")?.split('"').next()?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((unescape(name), unescape(value)))
        })
        .collect()
}

/// A page: its status and body; asserts it is HTML.
pub(crate) async fn page(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    assert!(resp.headers()["content-type"].to_str().expect("ascii").starts_with("text/html"), "an HTML page");
    (status, resp.text().await.expect("text"))
}

/// Submits the sign-in form of `html`.
pub(crate) async fn sign_in(
    app: &TestApp,
    browser: &reqwest::Client,
    html: &str,
    login: &str,
    password: &str,
) -> reqwest::Response {
    let mut form = hidden_fields(html);
    form.push(("username".into(), login.into()));
    form.push(("password".into(), password.into()));
    browser.post(app.url("/oauth2/authorize")).form(&form).send().await.expect("send")
}

async fn decide(app: &TestApp, browser: &reqwest::Client, html: &str, decision: &str) -> reqwest::Response {
    let mut form = hidden_fields(html);
    form.push(("decision".into(), decision.into()));
    browser.post(app.url("/oauth2/consent")).form(&form).send().await.expect("send")
}

/// The parameters of a redirect to the client.
pub(crate) fn redirected(resp: &reqwest::Response) -> HashMap<String, String> {
    assert!(resp.status().is_redirection(), "a redirect, got {}", resp.status());
    let location = resp.headers()["location"].to_str().expect("ascii");
    let (base, query) = location.split_once('?').expect("a query");
    assert!(base == REDIRECT || base == LOGOUT_REDIRECT, "to the registered URI: {location}");
    serde_urlencoded::from_str(query).expect("query")
}

/// Signs `user` in on a fresh browser and consents: the code's redirect parameters.
pub(crate) async fn code_for(
    app: &TestApp,
    browser: &reqwest::Client,
    rp: &Rp,
    user: &TestUser,
    challenge: &str,
) -> HashMap<String, String> {
    let (status, html) = page(authorize(app, browser, &request(rp, challenge, &[])).await).await;
    assert_eq!(status, 200, "the sign-in page");
    let resp = sign_in(app, browser, &html, &user.username, &user.password).await;
    let resp = if resp.status() == 200 {
        let (_, consent) = page(resp).await;
        assert!(consent.contains("Allow access?"), "the consent page");
        decide(app, browser, &consent, "allow").await
    } else {
        resp
    };
    assert_eq!(resp.status(), 303);
    redirected(&resp)
}

/// `POST /oauth2/token` as `rp` (HTTP Basic).
async fn token(app: &TestApp, rp: &Rp, form: &[(&str, &str)]) -> reqwest::Response {
    token_basic(app, &rp.id, &rp.secret, form).await
}

pub(crate) async fn exchange(app: &TestApp, rp: &Rp, code: &str, verifier: &str) -> reqwest::Response {
    let form =
        [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT), ("code_verifier", verifier)];
    token(app, rp, &form).await
}

pub(crate) async fn userinfo(app: &TestApp, access: &str) -> reqwest::Response {
    app.client.get(app.url("/oauth2/userinfo")).bearer_auth(access).send().await.expect("send")
}

/// A running instance with a relying party (registered by an admin), a user, a PKCE pair and a
/// browser: what every test here starts from.
pub(crate) struct Fixture {
    pub(crate) app: TestApp,
    pub(crate) rp: Rp,
    pub(crate) user: TestUser,
    pub(crate) verifier: String,
    pub(crate) challenge: String,
    pub(crate) browser: reqwest::Client,
}

pub(crate) async fn fixture(app: TestApp, rp_extra: Value) -> Fixture {
    let admin = app.admin_session().await;
    let rp = register(&app, &admin, rp_extra).await;
    let user = app.new_user().await;
    let (verifier, challenge) = pkce();
    Fixture { app, rp, user, verifier, challenge, browser: browser() }
}

#[tokio::test]
async fn the_code_flow_signs_a_user_in_with_state_nonce_iss_an_id_token_and_userinfo() {
    // Arrange
    let Fixture { app, rp, user, verifier, challenge, browser, .. } = fixture(spawn_app().await, json!({})).await;

    // Act: the sign-in page, then the consent page, then back to the client.
    let (status, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    assert_eq!(status, 200);
    assert!(html.contains("Example App") && html.contains("<label for=\"password\">"), "{html}");
    let (status, consent) = page(sign_in(&app, &browser, &html, &user.email, &user.password).await).await;
    assert_eq!(status, 200, "signed in with the email, the consent page follows");
    for scope in ["See your email address", "See your username", "See the roles you hold"] {
        assert!(consent.contains(scope), "{scope}: {consent}");
    }
    let resp = decide(&app, &browser, &consent, "allow").await;
    let back = redirected(&resp);

    // Assert: the redirect carries the code, the state and the issuer (RFC 9207).
    assert_eq!(back["state"], "st-4711");
    assert_eq!(back["iss"], app.app.config.tokens.issuer);
    let tokens = exchange(&app, &rp, &back["code"], &verifier).await;
    assert_eq!(tokens.status(), 200);
    assert_eq!(tokens.headers()["cache-control"], "no-store");
    let tokens: Value = tokens.json().await.expect("json");
    let access = tokens["access_token"].as_str().expect("access");
    let id_token = tokens["id_token"].as_str().expect("id token");
    assert!(tokens["refresh_token"].is_string(), "offline_access gives a refresh token");
    assert_eq!(tokens["scope"], "email offline_access openid profile roles");

    let id = claims(id_token);
    assert_eq!(id["iss"], app.app.config.tokens.issuer);
    assert_eq!(id["sub"], user.id);
    assert_eq!(id["aud"], rp.id);
    assert_eq!(id["azp"], rp.id);
    assert_eq!(id["nonce"], "n-0815");
    assert_eq!(id["email"], user.email);
    assert_eq!(id["email_verified"], false);
    assert_eq!(id["preferred_username"], user.username);
    assert_eq!(id["roles"], json!(["user"]));
    let at_hash = B64.encode(&digest(&SHA256, access.as_bytes()).as_ref()[..16]);
    assert_eq!(id["at_hash"], at_hash);
    assert!(id["auth_time"].as_i64().expect("auth_time") <= id["iat"].as_i64().expect("iat"));

    let access_claims = claims(access);
    assert_eq!(
        (access_claims["sub"].as_str(), access_claims["client_id"].as_str()),
        (Some(user.id.as_str()), Some(rp.id.as_str()))
    );

    let info = userinfo(&app, access).await;
    assert_eq!(info.status(), 200);
    let info: Value = info.json().await.expect("json");
    assert_eq!(
        info,
        json!({ "sub": user.id, "preferred_username": user.username, "email": user.email, "email_verified": false, "roles": ["user"] })
    );
    let posted = app.client.post(app.url("/oauth2/userinfo")).bearer_auth(access).send().await.expect("send");
    assert_eq!(posted.status(), 200, "userinfo answers POST too");

    // The refresh token rotates at the token endpoint, for this client.
    let refreshed = token(
        &app,
        &rp,
        &[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().expect("rt"))],
    )
    .await;
    assert_eq!(refreshed.status(), 200);
}

#[tokio::test]
async fn a_replayed_code_fails_and_revokes_the_tokens_the_first_exchange_issued() {
    let Fixture { app, rp, user, verifier, challenge, .. } =
        fixture(spawn_app().await, json!({ "first_party": true })).await;
    let back = code_for(&app, &browser(), &rp, &user, &challenge).await;

    let first: Value = exchange(&app, &rp, &back["code"], &verifier).await.json().await.expect("json");
    let access = first["access_token"].as_str().expect("access");
    assert_eq!(userinfo(&app, access).await.status(), 200);

    assert_error(exchange(&app, &rp, &back["code"], &verifier).await, 400, "invalid_grant").await;

    let revoked = userinfo(&app, access).await;
    assert_eq!(revoked.status(), 401, "the first exchange's access token is revoked");
    assert_eq!(revoked.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");
    let refresh = token(
        &app,
        &rp,
        &[("grant_type", "refresh_token"), ("refresh_token", first["refresh_token"].as_str().expect("rt"))],
    )
    .await;
    assert_error(refresh, 400, "invalid_grant").await;
}

#[tokio::test]
async fn parallel_exchanges_of_one_code_leave_no_working_tokens_behind_but_one_set_at_most() {
    // A code presented four times at once: whichever exchange wins, the replays must revoke
    // what it issued, even when they arrive before the winner has answered.
    let Fixture { app, rp, user, browser, .. } =
        fixture(spawn_app_setting("RATE_LIMIT_ENABLED", "false").await, json!({ "first_party": true })).await;
    for round in 0..25 {
        let (verifier, challenge) = pkce();
        let back = if round == 0 {
            code_for(&app, &browser, &rp, &user, &challenge).await
        } else {
            // Signed in already (first party): the code comes without a page.
            let resp = authorize(&app, &browser, &request(&rp, &challenge, &[])).await;
            redirected(&resp)
        };
        let code = back["code"].clone();
        let twins = (0..4).map(|_| exchange(&app, &rp, &code, &verifier));
        let answers = futures::future::join_all(twins).await;
        let mut issued = Vec::new();
        for resp in answers {
            if resp.status() == 200 {
                let body: Value = resp.json().await.expect("json");
                issued.push(body["access_token"].as_str().expect("access").to_string());
            } else {
                assert_error(resp, 400, "invalid_grant").await;
            }
        }
        // One statement uses the code and opens its session, so exactly one twin wins, and
        // the others, finding the code used, revoke what it issued.
        assert_eq!(issued.len(), 1, "round {round}: {} exchanges of one code succeeded", issued.len());
        assert_eq!(
            userinfo(&app, &issued[0]).await.status(),
            401,
            "round {round}: the winner's token survived its replay"
        );
    }
}

#[tokio::test]
async fn pkce_is_required_s256_only_and_its_verifier_must_match() {
    let Fixture { app, rp, user, verifier, challenge, browser, .. } =
        fixture(spawn_app().await, json!({ "first_party": true })).await;

    for (extra, why) in [
        (vec![("code_challenge", "")], "missing"),
        (vec![("code_challenge_method", "plain")], "plain"),
        (vec![("code_challenge_method", "")], "no method"),
        (vec![("code_challenge", "short")], "malformed"),
    ] {
        let resp = authorize(&app, &browser, &request(&rp, &challenge, &extra)).await;
        let back = redirected(&resp);
        assert_eq!(back["error"], "invalid_request", "{why}");
        assert_eq!(back["state"], "st-4711", "{why}");
        assert_eq!(back["iss"], app.app.config.tokens.issuer, "{why}");
    }

    let back = code_for(&app, &browser, &rp, &user, &challenge).await;
    let (other_verifier, _) = pkce();
    assert_error(exchange(&app, &rp, &back["code"], &other_verifier).await, 400, "invalid_grant").await;
    assert_error(exchange(&app, &rp, &back["code"], &verifier).await, 400, "invalid_grant").await;

    let back = redirected(&authorize(&app, &browser, &request(&rp, &challenge, &[])).await);
    let missing =
        token(&app, &rp, &[("grant_type", "authorization_code"), ("code", &back["code"]), ("redirect_uri", REDIRECT)])
            .await;
    assert_error(missing, 400, "invalid_request").await;
    let wrong_uri = token(
        &app,
        &rp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &back["code"]),
            ("redirect_uri", "https://app.example/other"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_error(wrong_uri, 400, "invalid_grant").await;
}

#[tokio::test]
async fn an_unknown_client_or_an_unregistered_redirect_uri_is_a_page_never_a_redirect() {
    let Fixture { app, rp, challenge, browser, .. } = fixture(spawn_app().await, json!({})).await;
    for uri in [
        "https://app.example/callback/",
        "https://APP.example/callback",
        "https://app.example/Callback",
        "https://app.example/callback?next=https://evil.example",
        "https://app.example:8443/callback",
        "http://app.example/callback",
        "https://app.example/callback#x",
        "https://evil.example/callback",
    ] {
        let resp = authorize(&app, &browser, &request(&rp, &challenge, &[("redirect_uri", uri)])).await;
        assert!(resp.headers().get("location").is_none(), "{uri} redirected");
        let (status, html) = page(resp).await;
        assert_eq!(status, 400, "{uri}");
        assert!(html.contains("has not registered"), "{uri}: {html}");
    }
    let unknown = authorize(&app, &browser, &request(&rp, &challenge, &[("client_id", "no-such-client")])).await;
    assert!(unknown.headers().get("location").is_none());
    assert_eq!(page(unknown).await.0, 400);

    // Errors that are safe to send back go to the client, with state and iss.
    let bad_type = authorize(&app, &browser, &request(&rp, &challenge, &[("response_type", "token")])).await;
    let back = redirected(&bad_type);
    assert_eq!((back["error"].as_str(), back["state"].as_str()), ("unsupported_response_type", "st-4711"));
    let bad_scope = authorize(&app, &browser, &request(&rp, &challenge, &[("scope", "openid admin")])).await;
    assert_eq!(redirected(&bad_scope)["error"], "invalid_scope");
}

#[tokio::test]
async fn a_redirect_uri_taken_out_of_the_registration_gets_no_code_and_no_redirect_at_once() {
    // Arrange: a signed-in browser and a fresh one, both having seen the sign-in page (so the
    // registration is cached), then the admin replaces the redirect URI.
    let Fixture { app, rp, user, challenge, browser: signed_in, .. } =
        fixture(spawn_app().await, json!({ "first_party": true })).await;
    code_for(&app, &signed_in, &rp, &user, &challenge).await;
    let fresh = browser();
    let (status, html) = page(authorize(&app, &fresh, &request(&rp, &challenge, &[])).await).await;
    assert_eq!(status, 200);
    let admin = app.admin_session().await;
    let metadata = json!({
        "client_name": "Example App",
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": ["https://app.example/other"],
        "scope": SCOPE,
        "first_party": true,
    });
    let path = format!("/api/v1/clients/{}", rp.id);
    let put = app.call(reqwest::Method::PUT, &path, Some(&admin.access), Some(&metadata)).await;
    assert_eq!(put.status(), 200);

    // Act and assert: the signed-in browser would get a code without a page; it gets the error
    // page. The fresh browser's sign-in form, posted now, signs it in nowhere.
    let resp = authorize(&app, &signed_in, &request(&rp, &challenge, &[])).await;
    assert!(resp.headers().get("location").is_none(), "redirected to a URI no longer registered");
    assert_eq!(page(resp).await.0, 400);
    let resp = sign_in(&app, &fresh, &html, &user.username, &user.password).await;
    assert!(resp.headers().get("location").is_none(), "redirected to a URI no longer registered");
    let (status, html) = page(resp).await;
    assert_eq!(status, 400);
    assert!(html.contains("has not registered"), "{html}");
    let resp = authorize(&app, &fresh, &request(&rp, &challenge, &[("prompt", "none")])).await;
    assert!(resp.headers().get("location").is_none(), "an error redirect to a URI no longer registered");
    assert_eq!(page(resp).await.0, 400);
}

#[tokio::test]
async fn a_form_without_its_csrf_token_or_with_a_wrong_one_is_a_403_page_and_signs_nobody_in() {
    let Fixture { app, rp, user, challenge, browser, .. } = fixture(spawn_app().await, json!({})).await;
    let (_, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    let fields = hidden_fields(&html);
    assert!(fields.iter().any(|(k, v)| k == "csrf_token" && !v.is_empty()));

    let with_csrf = |value: Option<&str>| {
        let mut form: Vec<(String, String)> = fields.iter().filter(|(k, _)| k != "csrf_token").cloned().collect();
        if let Some(v) = value {
            form.push(("csrf_token".into(), v.into()));
        }
        form.push(("username".into(), user.username.clone()));
        form.push(("password".into(), user.password.clone()));
        form
    };
    // A forged token, and the right token from a browser without the cookie (another site).
    let right = fields.iter().find(|(k, _)| k == "csrf_token").map(|(_, v)| v.clone()).expect("token");
    let forged = "A".repeat(43);
    for (client, form, why) in
        [(&browser, with_csrf(Some(&forged)), "forged"), (&app.client, with_csrf(Some(&right)), "no cookie")]
    {
        let resp = client.post(app.url("/oauth2/authorize")).form(&form).send().await.expect("send");
        assert!(resp.headers().get("set-cookie").is_none(), "{why}: no session cookie");
        let (status, html) = page(resp).await;
        assert_eq!(status, 403, "{why}");
        assert!(html.contains("expired"), "{why}: {html}");
    }
    // Without a csrf_token the POST is an authorization request, which shows the sign-in page
    // again and signs nobody in.
    let resp = browser.post(app.url("/oauth2/authorize")).form(&with_csrf(None)).send().await.expect("send");
    assert_eq!(page(resp).await.0, 200);
    let consent_without = browser
        .post(app.url("/oauth2/consent"))
        .form(&request(&rp, &challenge, &[("decision", "allow")]))
        .send()
        .await
        .expect("send");
    assert_eq!(page(consent_without).await.0, 403);

    let (_, sessions) = {
        let s = app.login(&user).await;
        let resp = app.get_with("/api/v1/sessions", &s.access).await;
        (resp.status(), resp.json::<Value>().await.expect("json"))
    };
    assert!(
        sessions.as_array().expect("list").iter().all(|s| s["kind"] != "browser"),
        "no browser session: {sessions}"
    );
}

#[tokio::test]
async fn every_page_forbids_framing_scripts_caching_and_referrers() {
    let Fixture { app, rp, user, challenge, browser, .. } = fixture(spawn_app().await, json!({})).await;

    let sign_in_page = authorize(&app, &browser, &request(&rp, &challenge, &[])).await;
    let headers = sign_in_page.headers().clone();
    let html = sign_in_page.text().await.expect("text");
    let consent_page = sign_in(&app, &browser, &html, &user.username, &user.password).await;
    let error_page =
        authorize(&app, &browser, &request(&rp, &challenge, &[("redirect_uri", "https://evil.example/")])).await;
    let logout_page = browser.get(app.url("/oauth2/logout")).send().await.expect("send");
    for (what, h) in [
        ("sign-in", &headers),
        ("consent", consent_page.headers()),
        ("error", error_page.headers()),
        ("sign-out", logout_page.headers()),
    ] {
        let csp = h["content-security-policy"].to_str().expect("ascii");
        for directive in ["default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "style-src 'self'"] {
            assert!(csp.contains(directive), "{what}: {csp}");
        }
        // Scripts and requests only from this service, and no inline script.
        assert!(csp.contains("script-src 'self';") && csp.contains("connect-src 'self';"), "{what}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(h["cache-control"], "no-store", "{what}");
    }
    // Forms may go only here and to the one redirect URI that was checked.
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("form-action 'self' https://app.example;"), "{csp}");
    // The cookies are HttpOnly and SameSite=Lax.
    let cookies: Vec<String> =
        consent_page.headers().get_all("set-cookie").iter().map(|v| v.to_str().expect("ascii").to_string()).collect();
    let session = cookies.iter().find(|c| c.starts_with("session=")).expect("a session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
    // The one script is the passkey script, under its hashed name: no inline script.
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 1, "{html}");
    assert!(scripts[0].starts_with(" src=\"/oauth2/assets/webauthn-") && scripts[0].contains("\" defer></script>"));
}

#[tokio::test]
async fn the_pages_link_a_stylesheet_named_by_its_hash_that_browsers_keep_for_a_year() {
    let Fixture { app, rp, challenge, browser, .. } = fixture(spawn_app().await, json!({})).await;
    let (_, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    let href = html
        .split("<link rel=\"stylesheet\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a stylesheet link");
    let name = href.strip_prefix("/oauth2/assets/style-").and_then(|n| n.strip_suffix(".css")).expect(href);
    assert!(name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit()), "{href}");

    let css = browser.get(app.url(href)).send().await.expect("send");
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(css.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert!(css.text().await.expect("text").contains("box-sizing"));

    // Any other name, the old unhashed one included, is not an asset.
    for other in ["/oauth2/assets/style.css", "/oauth2/assets/style-0000000000000000.css", "/oauth2/assets/x"] {
        let resp = browser.get(app.url(other)).send().await.expect("send");
        assert_eq!(resp.status(), 404, "{other}");
        assert_eq!(resp.headers()["cache-control"], "no-store", "{other}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], "not_found", "{other}");
    }
}

#[tokio::test]
async fn a_wrong_password_shows_its_error_at_the_field_and_counts_as_a_failed_login() {
    let Fixture { app, rp, user, challenge, browser, .. } = fixture(spawn_app().await, json!({})).await;
    let (_, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    let (status, again) = page(sign_in(&app, &browser, &html, &user.username, "wrong password!").await).await;
    assert_eq!(status, 400);
    assert!(again.contains("Wrong username or password."), "{again}");
    assert!(again.contains("aria-invalid=\"true\"") && again.contains("aria-describedby=\"signin-error\""));
    assert!(again.contains(&format!("value=\"{}\"", user.username)), "the username stays filled in");
    let failures = app.metric("auth_logins_total{outcome=\"failure\"}").await;
    assert!(failures >= 1.0, "a failed login is counted like the API's: {failures}");

    // The same lockout as the API login: after the threshold, even the right password waits.
    let mut last = again;
    for _ in 0..10 {
        let (status, html) = page(sign_in(&app, &browser, &last, &user.username, "wrong password!").await).await;
        last = html;
        if status == 429 {
            break;
        }
    }
    let (status, locked) = page(sign_in(&app, &browser, &last, &user.username, &user.password).await).await;
    assert_eq!(status, 429, "{locked}");
    assert!(locked.contains("Too many attempts"), "{locked}");
}

#[tokio::test]
async fn consent_is_remembered_listed_and_revocable() {
    let Fixture { app, rp, user, verifier, challenge, browser, .. } = fixture(spawn_app().await, json!({})).await;
    let back = code_for(&app, &browser, &rp, &user, &challenge).await;
    let tokens: Value = exchange(&app, &rp, &back["code"], &verifier).await.json().await.expect("json");

    // Remembered: the next request, and one for fewer scopes, get a code without a page.
    for scope in [SCOPE, "openid email"] {
        let again = authorize(&app, &browser, &request(&rp, &challenge, &[("scope", scope)])).await;
        assert!(redirected(&again).contains_key("code"), "{scope}");
    }

    let session = app.login(&user).await;
    let listed: Value = app.get_with("/api/v1/consents", &session.access).await.json().await.expect("json");
    let consent_path = format!("/api/v1/consents/{}", rp.id);
    let revoke_consent = || app.delete_with(&consent_path, &session.access);
    assert_eq!(listed[0]["client_id"], rp.id);
    assert_eq!(listed[0]["client_name"], "Example App");
    assert_eq!(listed[0]["scope"], "email offline_access openid profile roles");

    let revoke = revoke_consent().await;
    assert_eq!(revoke.status(), 204);
    assert_eq!(userinfo(&app, tokens["access_token"].as_str().expect("at")).await.status(), 401, "its tokens end");
    let (status, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[])).await).await;
    assert_eq!(status, 200);
    assert!(html.contains("Allow access?"), "consent is asked again: {html}");
    // Denying sends the user back with access_denied.
    let denied = decide(&app, &browser, &html, "deny").await;
    assert_eq!(redirected(&denied)["error"], "access_denied");
    let again = revoke_consent().await;
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn max_age_and_prompt_login_force_a_new_sign_in_and_prompt_none_never_shows_a_page() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let rp = register(&app, &admin, json!({ "first_party": true })).await;
    let third_party = register(&app, &admin, json!({})).await;
    let user = app.new_user().await;
    let (_, challenge) = pkce();
    let browser = browser();

    let none = redirected(&authorize(&app, &browser, &request(&rp, &challenge, &[("prompt", "none")])).await);
    assert_eq!(none["error"], "login_required");
    assert_eq!(none["state"], "st-4711");

    code_for(&app, &browser, &rp, &user, &challenge).await;
    let silent = redirected(&authorize(&app, &browser, &request(&rp, &challenge, &[("prompt", "none")])).await);
    assert!(silent.contains_key("code"), "prompt=none with a live session: {silent:?}");
    let consent =
        redirected(&authorize(&app, &browser, &request(&third_party, &challenge, &[("prompt", "none")])).await);
    assert_eq!(consent["error"], "consent_required");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for extra in [("max_age", "0"), ("prompt", "login")] {
        let (status, html) = page(authorize(&app, &browser, &request(&rp, &challenge, &[extra])).await).await;
        assert_eq!(status, 200, "{extra:?} shows the sign-in page");
        let resp = sign_in(&app, &browser, &html, &user.username, &user.password).await;
        assert!(redirected(&resp).contains_key("code"), "{extra:?}");
    }
    let fine = redirected(&authorize(&app, &browser, &request(&rp, &challenge, &[("max_age", "3600")])).await);
    assert!(fine.contains_key("code"), "a recent sign-in satisfies max_age");
    let bad = redirected(&authorize(&app, &browser, &request(&rp, &challenge, &[("max_age", "soon")])).await);
    assert_eq!(bad["error"], "invalid_request");
}

#[tokio::test]
async fn the_browser_session_is_listed_ends_with_logout_all_and_with_sign_out() {
    let Fixture { app, rp, user, verifier, challenge, browser, .. } =
        fixture(spawn_app().await, json!({ "first_party": true })).await;
    let back = code_for(&app, &browser, &rp, &user, &challenge).await;
    let tokens: Value = exchange(&app, &rp, &back["code"], &verifier).await.json().await.expect("json");
    let api = app.login(&user).await;
    let sessions: Value = app.get_with("/api/v1/sessions", &api.access).await.json().await.expect("json");
    let kinds: Vec<&str> = sessions.as_array().expect("list").iter().filter_map(|s| s["kind"].as_str()).collect();
    for kind in ["browser", "oauth", "api"] {
        assert!(kinds.contains(&kind), "{kind} in {sessions}");
    }
    let oauth = sessions.as_array().expect("list").iter().find(|s| s["kind"] == "oauth").expect("oauth");
    assert_eq!(oauth["client_id"], rp.id);

    // Sign-out: a confirmation page, then back to the registered URI with the state.
    let id_token = tokens["id_token"].as_str().expect("id token");
    let query = [("id_token_hint", id_token), ("post_logout_redirect_uri", LOGOUT_REDIRECT), ("state", "bye")];
    let (status, confirm) =
        page(browser.get(app.url("/oauth2/logout")).query(&query).send().await.expect("send")).await;
    assert_eq!(status, 200);
    assert!(confirm.contains(&user.username), "{confirm}");
    let unregistered = [("id_token_hint", id_token), ("post_logout_redirect_uri", "https://evil.example/")];
    let refused = browser.get(app.url("/oauth2/logout")).query(&unregistered).send().await.expect("send");
    assert!(refused.headers().get("location").is_none());
    assert_eq!(page(refused).await.0, 400);

    let no_csrf = browser.post(app.url("/oauth2/logout")).form(&query).send().await.expect("send");
    assert_eq!(page(no_csrf).await.0, 403, "a sign-out needs its CSRF token");
    let out = browser.post(app.url("/oauth2/logout")).form(&hidden_fields(&confirm)).send().await.expect("send");
    assert_eq!(out.status(), 303);
    assert_eq!(redirected(&out)["state"], "bye");
    let none = redirected(&authorize(&app, &browser, &request(&rp, &challenge, &[("prompt", "none")])).await);
    assert_eq!(none["error"], "login_required", "signed out");

    // Logout-all ends a browser session too.
    let other = crate::oidc::browser();
    code_for(&app, &other, &rp, &user, &challenge).await;
    let all = app.post_with("/api/v1/auth/logout-all", &api.access).await;
    assert_eq!(all.status(), 200);
    let none = redirected(&authorize(&app, &other, &request(&rp, &challenge, &[("prompt", "none")])).await);
    assert_eq!(none["error"], "login_required", "logout-all ended it");
}

#[tokio::test]
async fn a_public_client_redeems_its_code_with_pkce_alone_and_cannot_introspect() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let rp = register(&app, &admin, json!({ "token_endpoint_auth_method": "none", "first_party": true })).await;
    assert!(rp.secret.is_empty(), "no secret for a public client");
    let user = app.new_user().await;
    let (verifier, challenge) = pkce();
    let back = code_for(&app, &browser(), &rp, &user, &challenge).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", rp.id.as_str()),
        ("code", &back["code"]),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ];
    let resp = token_form(&app, &form).await;
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.expect("json");
    let introspect = app
        .client
        .post(app.url("/oauth2/introspect"))
        .form(&[("client_id", rp.id.as_str()), ("token", tokens["access_token"].as_str().expect("at"))])
        .send()
        .await
        .expect("send");
    assert_error(introspect, 401, "invalid_client").await;
    let cc = token_form(&app, &[("grant_type", "client_credentials"), ("client_id", rp.id.as_str())]).await;
    assert_error(cc, 400, "unauthorized_client").await;
}

#[tokio::test]
async fn userinfo_needs_a_live_openid_token() {
    let app = spawn_app().await;
    let (_user, session) = app.user_session().await;
    let anonymous = app.client.get(app.url("/oauth2/userinfo")).send().await.expect("send");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let garbage = userinfo(&app, "not-a-token").await;
    assert_eq!(garbage.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");
    let no_scope = userinfo(&app, &session.access).await;
    assert_eq!(no_scope.status(), 403, "an API token was not granted openid");
    assert_eq!(no_scope.headers()["www-authenticate"], "Bearer error=\"insufficient_scope\", scope=\"openid\"");
}
