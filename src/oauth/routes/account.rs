//! The hosted pages that mailed links open: `/account/verify-email` and
//! `/account/confirm-email-change`. They follow the rules of the browser flow's pages (see
//! [`super::pages`]): the same headers (no framing, no inline or foreign scripts, no caching, no
//! referrer), the same double-submit CSRF token on every form, every failure a page with a 4xx
//! status.
//!
//! A GET never spends a token, since mail scanners fetch links: it only shows a button, and
//! only while the token is live. The POST (the button) spends it. What identifies the account is
//! the token alone: no session is needed or consulted, so a browser signed in as someone else
//! cannot redirect a token's effect to its own account.

use auth_actors::db::account_tokens::Purpose;
use auth_actors::db::sessions::BrowserSession;
use hyper::{Method, StatusCode};

use super::pages::{Failure, check_csrf, csrf_token_under, html, page_or_error, parameters, set_cookies};
use crate::app::App;
use crate::flows::email;
use crate::flows::error::FlowError;
use crate::http::{Request, Response};
use crate::pages::{self, AccountConfirm};

/// Where these pages live, and so the path of their CSRF cookie without `COOKIE_SECURE`.
const PATH: &str = "/account";

/// What one of these pages asks and does.
struct Link {
    purpose: Purpose,
    /// The page's own path (its form posts back to it).
    action: &'static str,
    title: &'static str,
    text: &'static str,
    button: &'static str,
    done_title: &'static str,
    done_text: &'static str,
}

const VERIFY: Link = Link {
    purpose: Purpose::VerifyEmail,
    action: email::VERIFY_PAGE,
    title: "Verify your email address",
    text: "Confirm that this address belongs to your account.",
    button: "Verify my address",
    done_title: "Address verified",
    done_text: "Your email address is verified. You can close this page.",
};

const CONFIRM_CHANGE: Link = Link {
    purpose: Purpose::EmailChange,
    action: email::CONFIRM_CHANGE_PAGE,
    title: "Confirm your new email address",
    text: "Your account will use this address from now on.",
    button: "Confirm the new address",
    done_title: "Address changed",
    done_text: "Your account now uses its new email address. You can close this page.",
};

/// `GET` and `POST /account/verify-email`.
pub async fn verify_email(app: &App, req: Request, _session: Option<BrowserSession>) -> Response {
    page_or_error(serve(app, req, &VERIFY).await)
}

/// `GET` and `POST /account/confirm-email-change`.
pub async fn confirm_email_change(app: &App, req: Request, _session: Option<BrowserSession>) -> Response {
    page_or_error(serve(app, req, &CONFIRM_CHANGE).await)
}

async fn serve(app: &App, mut req: Request, link: &Link) -> Result<Response, Failure> {
    let form = parameters(&mut req).await?;
    let token = form.get("token").unwrap_or_default().to_string();
    if req.method == Method::POST {
        check_csrf(app, &req, &form)?;
        match link.purpose {
            Purpose::VerifyEmail => email::verify(app, &token).await?,
            _ => email::confirm_change(app, &token).await?,
        };
        return Ok(html(StatusCode::OK, pages::account_done(link.done_title, link.done_text), None));
    }
    if !email::is_live(app, link.purpose, &token).await? {
        return Err(FlowError::InvalidAccountToken.into());
    }
    let (csrf, set) = csrf_token_under(app, &req, PATH)?;
    let fields = [("token", token.as_str()), ("csrf_token", csrf.as_str())];
    let page = AccountConfirm {
        title: link.title,
        text: link.text,
        action: link.action,
        button: link.button,
        fields: &fields,
    };
    let mut resp = html(StatusCode::OK, pages::account_confirm(&page), None);
    set_cookies(&mut resp, &set.into_iter().collect::<Vec<_>>());
    Ok(resp)
}
