//! The hosted pages of the browser flow — sign-in, consent, sign-out, signed out, errors — and
//! those that mailed links open, and the second-factor and security pages, rendered on the
//! server as small, plain HTML that works without JavaScript (only passkeys need the one script,
//! [`webauthn_script_path`]), one stylesheet, every form with a CSRF token, labels tied to their fields and error text
//! tied to the field it is about (`aria-describedby`, `aria-invalid`), so that the pages work
//! in any browser and with assistive technology.
//!
//! The markup lives in askama templates under `templates/` at the repository root (one per page
//! and `base.html`, the layout they extend), compiled into the binary. Askama HTML-escapes every
//! value a template interpolates, and no template marks a value `|safe` but the TOTP QR code
//! (`totp_setup.html`: an SVG the service draws from its own `otpauth://` URI, modules only), so
//! escaping does not depend on anyone remembering it. The stylesheet is `assets/style.css`, served under a name
//! that carries a hash of its content ([`stylesheet_path`]): browsers may keep it for a year,
//! and a changed stylesheet is a new name, never a stale copy.

use std::sync::LazyLock;

use askama::Template;
use aws_lc_rs::digest::{SHA256, digest};

/// The path under which the router serves the pages' assets.
const ASSETS: &str = "/oauth2/assets/";

/// The stylesheet every page links.
const STYLESHEET: &str = include_str!("../assets/style.css");

/// The stylesheet's file name, computed once: its content changes only with the binary.
static STYLESHEET_NAME: LazyLock<String> = LazyLock::new(|| hashed_name("style", "css", STYLESHEET));

/// The stylesheet's full path, as the pages link it.
static STYLESHEET_PATH: LazyLock<String> = LazyLock::new(|| format!("{ASSETS}{}", *STYLESHEET_NAME));

/// The one script, for passkeys ([`webauthn_script_path`]): only the pages that offer a passkey
/// load it, and the pages' policy lets scripts come from this service alone (no inline script).
const WEBAUTHN_SCRIPT: &str = include_str!("../assets/webauthn.js");

static WEBAUTHN_SCRIPT_NAME: LazyLock<String> = LazyLock::new(|| hashed_name("webauthn", "js", WEBAUTHN_SCRIPT));

static WEBAUTHN_SCRIPT_PATH: LazyLock<String> = LazyLock::new(|| format!("{ASSETS}{}", *WEBAUTHN_SCRIPT_NAME));

/// What a page shows when its template cannot be rendered (a bug, not an input): nothing of the
/// request, so that a failure can never leak or inject anything.
const FALLBACK: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
     <title>Error · auth-service</title></head><body><main><h1>Something went wrong</h1>\
     <p role=\"alert\">This page could not be shown. Please try again.</p></main></body></html>\n";

/// `stem-<first 16 hex digits of the SHA-256 of content>.ext`: a name that changes whenever the
/// content does, so that it can be cached as immutable.
fn hashed_name(stem: &str, ext: &str, content: &str) -> String {
    let hash = digest(&SHA256, content.as_bytes());
    let hex: String = hash.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{stem}-{hex}.{ext}")
}

/// The path of the stylesheet the pages link (`/oauth2/assets/style-<hash>.css`).
pub fn stylesheet_path() -> &'static str {
    &STYLESHEET_PATH
}

/// The stylesheet, if `name` (the last segment of an asset path) is its current file name;
/// any other name, including an older hash, is not an asset.
pub fn stylesheet(name: &str) -> Option<&'static str> {
    (name == STYLESHEET_NAME.as_str()).then_some(STYLESHEET)
}

/// The path of the passkey script (`/oauth2/assets/webauthn-<hash>.js`).
pub fn webauthn_script_path() -> &'static str {
    &WEBAUTHN_SCRIPT_PATH
}

/// An asset by its current file name, and its media type; any other name is not an asset.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    if let Some(css) = stylesheet(name) {
        return Some(("text/css; charset=utf-8", css));
    }
    (name == WEBAUTHN_SCRIPT_NAME.as_str()).then_some(("text/javascript; charset=utf-8", WEBAUTHN_SCRIPT))
}

/// Renders a page, or the fallback page if the template fails.
pub(crate) fn render(page: &impl Template) -> String {
    page.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "a hosted page could not be rendered");
        FALLBACK.to_string()
    })
}

/// What a sign-in page shows: the client asking, and the error of a failed attempt.
pub struct SignIn<'a> {
    pub client_name: &'a str,
    pub login: &'a str,
    /// The error, shown at the password field.
    pub error: Option<&'a str>,
    /// The authorization request and the CSRF token, carried to the POST.
    pub fields: &'a [(&'a str, &'a str)],
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInHtml<'a> {
    title: &'a str,
    client_name: &'a str,
    login: &'a str,
    error: Option<&'a str>,
    fields: &'a [(&'a str, &'a str)],
    passkey_button: &'a str,
    passkey_mode: &'a str,
    passkey_start: &'a str,
    passkey_action: &'a str,
}

/// Where the page script starts a passkey sign-in, and where it submits the assertion.
const PASSKEY_START: &str = "/oauth2/authorize/passkey/start";
const PASSKEY_ACTION: &str = "/oauth2/authorize/passkey";

pub fn sign_in(page: &SignIn<'_>) -> String {
    render(&SignInHtml {
        title: "Sign in",
        client_name: page.client_name,
        login: page.login,
        error: page.error,
        fields: page.fields,
        passkey_button: "Sign in with a passkey",
        passkey_mode: "get",
        passkey_start: PASSKEY_START,
        passkey_action: PASSKEY_ACTION,
    })
}

/// What the second-factor page offers: a code form (TOTP or a recovery code) when the account
/// has an authenticator app, a passkey button when it has passkeys.
pub struct SecondFactor<'a> {
    pub client_name: &'a str,
    pub totp: bool,
    pub passkey: bool,
    pub error: Option<&'a str>,
    /// The authorization request, the pending step's `mfa_token` and the CSRF token.
    pub fields: &'a [(&'a str, &'a str)],
}

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactorHtml<'a> {
    title: &'a str,
    client_name: &'a str,
    totp: bool,
    passkey: bool,
    error: Option<&'a str>,
    fields: &'a [(&'a str, &'a str)],
    passkey_button: &'a str,
    passkey_mode: &'a str,
    passkey_start: &'a str,
    passkey_action: &'a str,
}

pub fn second_factor(page: &SecondFactor<'_>) -> String {
    render(&SecondFactorHtml {
        title: "Two-step verification",
        client_name: page.client_name,
        totp: page.totp,
        passkey: page.passkey,
        error: page.error,
        fields: page.fields,
        passkey_button: "Use a passkey",
        passkey_mode: "get",
        passkey_start: PASSKEY_START,
        passkey_action: PASSKEY_ACTION,
    })
}

#[derive(Template)]
#[template(path = "enrol.html")]
struct EnrolHtml<'a> {
    title: &'a str,
    client_name: &'a str,
    username: &'a str,
    setup_url: &'a str,
}

/// The page of a request that needs a second factor from a user who has none: a link to the
/// security page (`setup_url`), which links back to the request once a factor is set up.
pub fn enrol(client_name: &str, username: &str, setup_url: &str) -> String {
    render(&EnrolHtml { title: "Set up two-step verification", client_name, username, setup_url })
}

/// What a consent page asks.
pub struct ConsentPage<'a> {
    pub client_name: &'a str,
    pub username: &'a str,
    pub scopes: &'a [&'a str],
    pub fields: &'a [(&'a str, &'a str)],
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentHtml<'a> {
    title: &'a str,
    client_name: &'a str,
    username: &'a str,
    /// The scopes in a reader's words, in the order the page lists them.
    scopes: Vec<String>,
    fields: &'a [(&'a str, &'a str)],
}

/// A reader's words for a scope.
fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are (your account id)".into(),
        "profile" => "See your username".into(),
        "email" => "See your email address".into(),
        "roles" => "See the roles you hold".into(),
        "offline_access" => "Keep this access when you are not using it".into(),
        other => format!("Use the permission \u{201c}{other}\u{201d}"),
    }
}

/// Where a scope stands on the consent page: who you are first, then what the client may see,
/// then how long, then the client's own permissions.
fn scope_rank(scope: &str) -> usize {
    ["openid", "profile", "email", "roles", "offline_access"].iter().position(|s| *s == scope).unwrap_or(usize::MAX)
}

pub fn consent(page: &ConsentPage<'_>) -> String {
    let mut scopes = page.scopes.to_vec();
    scopes.sort_by_key(|s| (scope_rank(s), *s));
    render(&ConsentHtml {
        title: "Allow access",
        client_name: page.client_name,
        username: page.username,
        scopes: scopes.into_iter().map(describe_scope).collect(),
        fields: page.fields,
    })
}

#[derive(Template)]
#[template(path = "sign_out.html")]
struct SignOutHtml<'a> {
    title: &'a str,
    username: &'a str,
    fields: &'a [(&'a str, &'a str)],
}

pub fn sign_out(username: &str, fields: &[(&str, &str)]) -> String {
    render(&SignOutHtml { title: "Sign out", username, fields })
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutHtml<'a> {
    title: &'a str,
}

pub fn signed_out() -> String {
    render(&SignedOutHtml { title: "Signed out" })
}

/// A page that a mailed link opens: what it is about, and the one button that acts on the link.
pub struct AccountConfirm<'a> {
    pub title: &'a str,
    pub text: &'a str,
    /// Where the form posts (the page's own path).
    pub action: &'a str,
    pub button: &'a str,
    /// The link's token and the CSRF token, carried to the POST.
    pub fields: &'a [(&'a str, &'a str)],
}

#[derive(Template)]
#[template(path = "account_confirm.html")]
struct AccountConfirmHtml<'a> {
    title: &'a str,
    text: &'a str,
    action: &'a str,
    button: &'a str,
    fields: &'a [(&'a str, &'a str)],
}

pub fn account_confirm(page: &AccountConfirm<'_>) -> String {
    render(&AccountConfirmHtml {
        title: page.title,
        text: page.text,
        action: page.action,
        button: page.button,
        fields: page.fields,
    })
}

#[derive(Template)]
#[template(path = "account_done.html")]
struct AccountDoneHtml<'a> {
    title: &'a str,
    message: &'a str,
}

/// What a mailed link's page shows once its button did what it said.
pub fn account_done(title: &str, message: &str) -> String {
    render(&AccountDoneHtml { title, message })
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorHtml<'a> {
    title: &'a str,
    message: &'a str,
}

/// An error that cannot be sent back to the client (unknown client, a redirect URI that is
/// not registered, a stale form): shown here, never redirected.
pub fn error(title: &str, message: &str) -> String {
    render(&ErrorHtml { title, message: &sentence(message) })
}

/// A message as a sentence: capitalised, with a full stop.
fn sentence(message: &str) -> String {
    let mut chars = message.trim().chars();
    let mut out: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interpolated_value_is_escaped() {
        // Askama writes the five characters as numeric references: `<` `&#60;`, `>` `&#62;`,
        // `&` `&#38;`, `"` `&#34;`, `'` `&#39;`.
        let page = sign_in(&SignIn {
            client_name: "<script>alert(1)</script>",
            login: "\"><img src=x>",
            error: Some("<b>no</b>"),
            fields: &[("state", "\"'<>&"), ("\"><i>", "x")],
        });
        // The one script element is the page's own passkey script; the client name is text.
        assert_eq!(page.matches("<script").count(), 1, "{page}");
        assert!(page.contains(&format!("<script src=\"{}\" defer></script>", webauthn_script_path())));
        assert!(!page.contains("<script>") && !page.contains("<img") && !page.contains("<b>") && !page.contains("<i>"));
        assert!(page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "the client name: {page}");
        assert!(page.contains("value=\"&#34;&#62;&#60;img src=x&#62;\""), "the login, in its attribute: {page}");
        assert!(page.contains("&#60;b&#62;no&#60;/b&#62;"), "the error: {page}");
        assert!(page.contains("name=\"state\" value=\"&#34;&#39;&#60;&#62;&#38;\""), "a hidden value: {page}");
        assert!(page.contains("name=\"&#34;&#62;&#60;i&#62;\""), "a hidden field's name: {page}");
        assert!(page.contains("aria-describedby=\"signin-error\"") && page.contains("aria-invalid=\"true\""));

        let page = consent(&ConsentPage {
            client_name: "A \"quoted\" <app>",
            username: "<u>ada</u>",
            scopes: &["openid", "<script>x</script>"],
            fields: &[("csrf_token", "'\"")],
        });
        assert!(!page.contains("<script") && !page.contains("<u>") && !page.contains("<app>"));
        assert!(page.contains("A &#34;quoted&#34; &#60;app&#62;"), "the client name: {page}");
        assert!(page.contains("Signed in as &#60;u&#62;ada&#60;/u&#62;."), "the username: {page}");
        assert!(page.contains("\u{201c}&#60;script&#62;x&#60;/script&#62;\u{201d}"), "a scope name: {page}");
        assert!(page.contains("value=\"&#39;&#34;\""), "a hidden value: {page}");

        let page = sign_out("<b>ada</b>", &[("state", "<x>")]);
        assert!(!page.contains("<b>") && !page.contains("<x>"));
        assert!(page.contains("&#60;b&#62;ada&#60;/b&#62;") && page.contains("value=\"&#60;x&#62;\""), "{page}");

        let page = error("<t>", "the <m> & \"n\"");
        assert!(!page.contains("<t>") && !page.contains("<m>"));
        assert!(page.contains("<title>&#60;t&#62; · auth-service</title>") && page.contains("<h1>&#60;t&#62;</h1>"));
        assert!(page.contains("The &#60;m&#62; &#38; &#34;n&#34;."), "the message: {page}");
    }

    #[test]
    fn the_sign_in_page_keeps_its_fields_labels_and_focus() {
        let fresh = sign_in(&SignIn { client_name: "app", login: "", error: None, fields: &[("state", "s")] });
        assert!(fresh.contains("<label for=\"username\">Username or email</label>"));
        assert!(fresh.contains("<label for=\"password\">Password</label>"));
        assert!(fresh.contains("<input type=\"hidden\" name=\"state\" value=\"s\">"));
        assert!(fresh.contains("spellcheck=\"false\" required autofocus>"), "a fresh page focuses the username");
        assert!(fresh.contains("autocomplete=\"current-password\" required>"));
        assert!(!fresh.contains("aria-invalid") && !fresh.contains("signin-error"));
        assert!(fresh.contains(&format!("<link rel=\"stylesheet\" href=\"{}\">", stylesheet_path())));
        assert!(
            fresh.contains("<a href=\"/account/forgot-password\">Forgot your password?</a>"),
            "a way back in, carrying nothing of the request: {fresh}"
        );

        let again = sign_in(&SignIn { client_name: "app", login: "ada", error: Some("wrong"), fields: &[] });
        assert!(again.contains("value=\"ada\" autocomplete=\"username\""));
        assert!(again.contains("spellcheck=\"false\" required>"));
        assert!(
            again.contains("required aria-invalid=\"true\" aria-describedby=\"signin-error\" autofocus>"),
            "after a failure the password has the focus and the error: {again}"
        );
        assert!(again.contains("<p class=\"error\" id=\"signin-error\" role=\"alert\">wrong</p>"));
    }

    #[test]
    fn consent_lists_identity_first_and_error_text_reads_as_a_sentence() {
        let page = consent(&ConsentPage {
            client_name: "app",
            username: "ada",
            scopes: &["offline_access", "email", "openid", "orders:read"],
            fields: &[],
        });
        let at = |text: &str| page.find(text).expect(text);
        assert!(at("Know who you are") < at("email address") && at("email address") < at("Keep this access"));
        assert!(at("Keep this access") < at("orders:read"));
        assert_eq!(sentence("the application is not known"), "The application is not known.");
        assert_eq!(sentence("Try again?"), "Try again?");
    }

    #[test]
    fn the_stylesheet_name_follows_its_content() {
        let name = hashed_name("style", "css", "body{color:red}");
        assert_eq!(name, hashed_name("style", "css", "body{color:red}"), "the same content, the same name");
        assert_ne!(name, hashed_name("style", "css", "body{color:blue}"), "new content, a new name");
        let hex = name.strip_prefix("style-").and_then(|n| n.strip_suffix(".css")).expect("style-<hash>.css");
        assert!(hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // The first 16 hex digits of SHA-256("abc") (FIPS 180-2, appendix B.1).
        assert_eq!(hashed_name("a", "b", "abc"), "a-ba7816bf8f01cfea.b");

        let path = stylesheet_path();
        let current = path.strip_prefix(ASSETS).expect("under the assets path");
        assert_eq!(current, hashed_name("style", "css", STYLESHEET));
        assert_eq!(stylesheet(current), Some(STYLESHEET));
        assert_eq!(stylesheet("style.css"), None, "the unhashed name is not served");
        assert_eq!(stylesheet("style-0000000000000000.css"), None, "nor another hash");
    }

    #[test]
    fn the_passkey_script_is_an_asset_under_its_hash_and_only_the_pages_with_a_passkey_load_it() {
        let path = webauthn_script_path();
        let name = path.strip_prefix(ASSETS).expect("under the assets path");
        assert_eq!(name, hashed_name("webauthn", "js", WEBAUTHN_SCRIPT));
        assert_eq!(asset(name), Some(("text/javascript; charset=utf-8", WEBAUTHN_SCRIPT)));
        assert_eq!(asset("webauthn.js"), None);
        assert_eq!(asset("webauthn-0000000000000000.js"), None);
        assert!(
            asset(stylesheet_path().strip_prefix(ASSETS).expect("an asset"))
                .is_some_and(|(t, _)| t.starts_with("text/css"))
        );

        let tag = format!("<script src=\"{path}\" defer></script>");
        let signin = sign_in(&SignIn { client_name: "app", login: "", error: None, fields: &[("csrf_token", "t")] });
        assert!(signin.contains(&tag), "{signin}");
        assert!(signin.contains("data-webauthn=\"get\"") && signin.contains("Sign in with a passkey"));
        assert_eq!(signin.matches("<script").count(), 1, "no inline script: {signin}");

        let page = |totp, passkey| {
            second_factor(&SecondFactor {
                client_name: "app",
                totp,
                passkey,
                error: Some("<wrong>"),
                fields: &[("mfa_token", "m"), ("csrf_token", "t")],
            })
        };
        let codes = page(true, false);
        assert!(!codes.contains("<script") && !codes.contains("data-webauthn"), "{codes}");
        assert!(codes.contains("action=\"/oauth2/authorize/mfa\"") && codes.contains("name=\"mfa_token\" value=\"m\""));
        assert_eq!(codes.matches("<form").count(), 1, "one form, so its hidden fields are the request's once");
        assert!(codes.contains("&#60;wrong&#62;") && codes.contains("aria-invalid=\"true\""));
        let both = page(true, true);
        assert!(both.contains(&tag) && both.contains("Use a passkey") && both.contains("/oauth2/authorize/mfa"));
        let keys = page(false, true);
        assert!(keys.contains(&tag) && !keys.contains("name=\"code\""), "{keys}");
        assert_eq!(signin.matches("<form").count(), 1, "the passkey button is in the sign-in form");
    }

    #[test]
    fn a_template_that_fails_renders_the_fallback_page() {
        struct Broken;
        impl std::fmt::Display for Broken {
            fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                Err(std::fmt::Error)
            }
        }
        #[derive(Template)]
        #[template(source = "<p>{{ value }}</p>", ext = "html")]
        struct Page {
            value: Broken,
        }
        assert_eq!(render(&Page { value: Broken }), FALLBACK);
    }
}
