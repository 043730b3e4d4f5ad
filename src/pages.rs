//! The hosted pages of the browser flow — sign-in, consent, sign-out, errors — rendered on the
//! server as small, plain HTML: no JavaScript, one stylesheet, every form with a CSRF token,
//! labels tied to their fields and error text tied to the field it is about
//! (`aria-describedby`, `aria-invalid`), so that the pages work in any browser and with
//! assistive technology. Every value interpolated is HTML-escaped.

use std::fmt::Write as _;

/// The stylesheet every page links (`GET /oauth2/assets/style.css`).
pub const STYLESHEET: &str = r#"*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f3f4f6;color:#111827}
main{max-width:26rem;margin:8vh auto;padding:2rem;background:#fff;border-radius:.75rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.5rem;margin:0 0 1rem}
p{margin:.5rem 0 1rem}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input[type=text],input[type=password]{width:100%;padding:.6rem .75rem;border:1px solid #9ca3af;border-radius:.375rem;font-size:1rem}
input:focus,button:focus{outline:3px solid #2563eb;outline-offset:2px}
input[aria-invalid=true]{border-color:#b91c1c}
.error{color:#b91c1c;margin:.5rem 0}
.actions{display:flex;gap:.75rem;margin-top:1.5rem}
button{padding:.6rem 1.2rem;border-radius:.375rem;border:1px solid #1d4ed8;background:#1d4ed8;color:#fff;font-size:1rem;cursor:pointer}
button.secondary{background:#fff;color:#1d4ed8}
ul.scopes{padding-left:1.25rem}
.client{font-weight:600}
small{color:#4b5563}
"#;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title} · auth-service</title><link rel=\"stylesheet\" href=\"/oauth2/assets/style.css\"></head>\
         <body><main>{body}</main></body></html>\n",
        title = escape(title)
    )
}

/// Hidden fields carrying the authorization request (and the CSRF token) through a form.
fn hidden(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in fields {
        let _ = write!(out, "<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(name), escape(value));
    }
    out
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

pub fn sign_in(page: &SignIn<'_>) -> String {
    let (invalid, described, error) = match page.error {
        Some(e) => (
            " aria-invalid=\"true\"",
            " aria-describedby=\"signin-error\"",
            format!("<p class=\"error\" id=\"signin-error\" role=\"alert\">{}</p>", escape(e)),
        ),
        None => ("", "", String::new()),
    };
    let body = format!(
        "<h1>Sign in</h1><p>to continue to <span class=\"client\">{client}</span></p>\
         <form method=\"post\" action=\"/oauth2/authorize\">{hidden}\
         <label for=\"username\">Username or email</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{login}\" autocomplete=\"username\" \
         autocapitalize=\"none\" spellcheck=\"false\" required{autofocus_login}>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required{invalid}{described}{autofocus_password}>\
         {error}<div class=\"actions\"><button type=\"submit\">Sign in</button></div></form>",
        client = escape(page.client_name),
        hidden = hidden(page.fields),
        login = escape(page.login),
        autofocus_login = if page.login.is_empty() { " autofocus" } else { "" },
        autofocus_password = if page.login.is_empty() { "" } else { " autofocus" },
    );
    layout("Sign in", &body)
}

/// What a consent page asks.
pub struct ConsentPage<'a> {
    pub client_name: &'a str,
    pub username: &'a str,
    pub scopes: &'a [&'a str],
    pub fields: &'a [(&'a str, &'a str)],
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
    let mut items = String::new();
    let mut scopes = page.scopes.to_vec();
    scopes.sort_by_key(|s| (scope_rank(s), *s));
    for scope in scopes {
        let _ = write!(items, "<li>{}</li>", escape(&describe_scope(scope)));
    }
    let body = format!(
        "<h1>Allow access?</h1><p><span class=\"client\">{client}</span> asks to:</p>\
         <ul class=\"scopes\">{items}</ul><p><small>Signed in as {user}. You can take this back at any time.</small></p>\
         <form method=\"post\" action=\"/oauth2/consent\">{hidden}<div class=\"actions\">\
         <button type=\"submit\" name=\"decision\" value=\"allow\" autofocus>Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></div></form>",
        client = escape(page.client_name),
        user = escape(page.username),
        hidden = hidden(page.fields),
    );
    layout("Allow access", &body)
}

pub fn sign_out(username: &str, fields: &[(&str, &str)]) -> String {
    let body = format!(
        "<h1>Sign out?</h1><p>You are signed in as <span class=\"client\">{user}</span>.</p>\
         <form method=\"post\" action=\"/oauth2/logout\">{hidden}<div class=\"actions\">\
         <button type=\"submit\" autofocus>Sign out</button></div></form>",
        user = escape(username),
        hidden = hidden(fields),
    );
    layout("Sign out", &body)
}

pub fn signed_out() -> String {
    layout("Signed out", "<h1>You are signed out</h1><p>You can close this window.</p>")
}

/// An error that cannot be sent back to the client (unknown client, a redirect URI that is
/// not registered, a stale form): shown here, never redirected.
pub fn error(title: &str, message: &str) -> String {
    let body = format!("<h1>{}</h1><p role=\"alert\">{}</p>", escape(title), escape(&sentence(message)));
    layout(title, &body)
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
        let page = sign_in(&SignIn {
            client_name: "<script>alert(1)</script>",
            login: "\"><img src=x>",
            error: Some("<b>no</b>"),
            fields: &[("state", "\"'<>&")],
        });
        assert!(!page.contains("<script>") && !page.contains("<img") && !page.contains("<b>"));
        assert!(page.contains("&quot;&#39;&lt;&gt;&amp;"));
        assert!(page.contains("aria-describedby=\"signin-error\"") && page.contains("aria-invalid=\"true\""));
        assert!(!page.contains("<script"), "no script at all");
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
}
