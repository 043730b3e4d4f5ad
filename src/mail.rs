//! The mails the service writes: each kind is a pair of templates in `templates/mail/` (a text
//! body and an HTML body, HTML-escaped by askama), rendered when the change that needs the mail
//! is made and stored in the outbox with it (see `auth_actors::db::outbox`). The Mailer only
//! delivers what is stored.
//!
//! Links are built from `PUBLIC_URL` (by default the issuer), never from the request's `Host`,
//! so a forged `Host` header cannot make a mail point elsewhere.

use askama::Template;
use auth_actors::db::outbox::OutgoingMail;

/// The name the mails sign with.
pub const SERVICE_NAME: &str = "auth-service";

/// A mail whose bodies could not be rendered (a template bug, never input): the change that
/// needed it is refused rather than made without its mail.
#[derive(Debug, thiserror::Error)]
#[error("mail template failed: {0}")]
pub struct RenderError(#[from] askama::Error);

/// Renders `text` and `html` into a mail of `kind` to `recipient`.
pub fn compose(
    kind: &'static str,
    recipient: &str,
    subject: impl Into<String>,
    text: &impl Template,
    html: &impl Template,
) -> Result<OutgoingMail, RenderError> {
    Ok(OutgoingMail {
        kind,
        recipient: recipient.to_string(),
        subject: subject.into(),
        text: text.render()?,
        html: html.render()?,
    })
}

/// `{public_url}{path}?{name}={value}&…`, the values percent-encoded.
pub fn link(public_url: &str, path: &str, query: &[(&str, &str)]) -> String {
    let mut out = format!("{}{path}", public_url.trim_end_matches('/'));
    if !query.is_empty() {
        out.push('?');
        out.push_str(&serde_urlencoded::to_string(query).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_built_on_the_public_url_with_encoded_values() {
        assert_eq!(
            link("https://id.example.com/", "/account/reset", &[("token", "a+b/c")]),
            "https://id.example.com/account/reset?token=a%2Bb%2Fc"
        );
        assert_eq!(link("https://id.example.com", "/x", &[]), "https://id.example.com/x");
    }
}
