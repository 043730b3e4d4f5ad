//! The route table: every route the service answers, as (method, path template, access,
//! rate-limit class, handler). The handler's kind is the route's access (see
//! [`super::access::Handler`]), so a route cannot be added without deciding who may call it, and
//! a handler receives exactly the caller that access produces. The access log and metrics label
//! requests with the template (never the raw path); the OpenAPI parity test and the access test
//! walk this same table.
//!
//! Architecture Invariant: a route's access is declared here and nowhere else, and no handler
//! checks roles.

use std::sync::LazyLock;

use auth_actors::keyspace::LimitClass::{
    Default as DEFAULT, Login as LOGIN, Recovery as RECOVERY, Refresh as REFRESH, Signup as SIGNUP, Token as TOKEN,
};
use hyper::Method;

use super::access::{Access, Handler};
use super::{account_pages, auth, email, mfa, ops, password, roles, users, webauthn, well_known};
use crate::flows::limits::Class;
use crate::http::ApiError;
use crate::http::router::{Route, Router};
use crate::oauth::routes::{self as provider, account, pages, security};

/// One entry of the route table.
pub struct RouteDef {
    pub method: Method,
    /// Path with `{name}` placeholders, as in the OpenAPI document.
    pub template: &'static str,
    /// Which per-IP rate limit it counts against.
    pub class: Class,
    /// What answers it, and so who may call it.
    pub handler: Handler,
}

impl RouteDef {
    /// Who may call it, decided before the handler runs.
    pub const fn access(&self) -> Access {
        self.handler.access()
    }
}

impl std::fmt::Debug for RouteDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:?}, {:?})", self.method, self.template, self.access(), self.class)
    }
}

impl Route for RouteDef {
    fn method(&self) -> &Method {
        &self.method
    }
    fn template(&self) -> &'static str {
        self.template
    }
}

const EXEMPT: Class = Class::Exempt;
const fn limited(class: auth_actors::keyspace::LimitClass) -> Class {
    Class::Limited(class)
}

/// `route!(METHOD "template", Kind, class, handler)`: an entry whose handler is of the [`Handler`]
/// kind `Kind` (a public handler takes the app and the request; every other one, also the caller
/// its kind produces).
macro_rules! route {
    ($method:ident $template:literal, Public, $class:expr, $handler:path) => {
        RouteDef {
            method: Method::$method,
            template: $template,
            class: $class,
            handler: Handler::Public(|app, req| Box::pin($handler(app, req))),
        }
    };
    ($method:ident $template:literal, $kind:ident, $class:expr, $handler:path) => {
        RouteDef {
            method: Method::$method,
            template: $template,
            class: $class,
            handler: Handler::$kind(|app, req, caller| Box::pin($handler(app, req, caller))),
        }
    };
}

/// The route table.
pub static ROUTES: &[RouteDef] = &[
    route!(GET "/api/v1/healthz", Public, EXEMPT, ops::healthz),
    route!(GET "/api/v1/readyz", Public, EXEMPT, ops::readyz),
    route!(GET "/metrics", Public, EXEMPT, ops::metrics_route),
    route!(GET "/openapi.json", Public, EXEMPT, ops::openapi),
    route!(GET "/.well-known/jwks.json", Public, EXEMPT, well_known::jwks),
    route!(GET "/.well-known/openid-configuration", Public, EXEMPT, well_known::discovery),
    route!(GET "/.well-known/oauth-authorization-server", Public, EXEMPT, well_known::discovery),
    route!(POST "/api/v1/auth/introspect", Introspector, limited(DEFAULT), provider::introspect),
    route!(POST "/api/v1/auth/revoke", OptionalClient, limited(DEFAULT), provider::revoke),
    route!(POST "/api/v1/users/signup", Public, limited(SIGNUP), users::signup),
    route!(POST "/api/v1/auth/login", Public, limited(LOGIN), auth::login_form),
    route!(POST "/api/v1/auth/login-json", Public, limited(LOGIN), auth::login_json),
    route!(POST "/api/v1/auth/mfa", Public, limited(LOGIN), auth::mfa),
    route!(POST "/api/v1/auth/refresh", Public, limited(REFRESH), auth::refresh),
    route!(POST "/api/v1/auth/logout", Public, limited(DEFAULT), auth::logout),
    route!(POST "/api/v1/auth/logout-all", Bearer, limited(DEFAULT), auth::logout_all),
    route!(GET "/api/v1/users/user/history", Bearer, limited(DEFAULT), users::history),
    route!(PATCH "/api/v1/users/auth/update", Bearer, limited(DEFAULT), users::update_profile),
    route!(DELETE "/api/v1/users/{user_id}", Admin, limited(DEFAULT), users::delete),
    route!(GET "/api/v1/sessions", Bearer, limited(DEFAULT), users::sessions),
    route!(DELETE "/api/v1/sessions/{id}", Bearer, limited(DEFAULT), users::revoke_session),
    route!(POST "/api/v1/roles/create", Admin, limited(DEFAULT), roles::create),
    route!(GET "/api/v1/roles/list", Bearer, limited(DEFAULT), roles::list),
    route!(PUT "/api/v1/roles/update/{role_id}", Admin, limited(DEFAULT), roles::update),
    route!(DELETE "/api/v1/roles/delete/{role_id}", Admin, limited(DEFAULT), roles::delete),
    route!(POST "/api/v1/user_roles/assign", Admin, limited(DEFAULT), roles::assign),
    route!(DELETE "/api/v1/user_roles/{user_id}/roles/{role_id}", Admin, limited(DEFAULT), roles::remove),
    route!(POST "/api/v1/user_roles/check", AdminOrService, limited(DEFAULT), roles::check),
    route!(GET "/api/v1/user_roles/me", OptionalBearer, limited(DEFAULT), roles::me),
    route!(GET "/api/v1/user_roles/list", Admin, limited(DEFAULT), roles::users),
    route!(GET "/api/v1/admin/events", Admin, limited(DEFAULT), roles::events),
    route!(POST "/oauth2/token", Token, limited(TOKEN), provider::token),
    route!(POST "/oauth2/introspect", Introspector, limited(TOKEN), provider::introspect),
    route!(POST "/oauth2/revoke", Client, limited(TOKEN), provider::revoke_by_client),
    route!(POST "/api/v1/clients", Admin, limited(DEFAULT), provider::create),
    route!(GET "/api/v1/clients", Admin, limited(DEFAULT), provider::list),
    route!(GET "/api/v1/clients/{client_id}", Admin, limited(DEFAULT), provider::show),
    route!(PUT "/api/v1/clients/{client_id}", Admin, limited(DEFAULT), provider::update),
    route!(DELETE "/api/v1/clients/{client_id}", Admin, limited(DEFAULT), provider::delete),
    route!(POST "/api/v1/clients/{client_id}/rotate-secret", Admin, limited(DEFAULT), provider::rotate_secret),
    route!(GET "/oauth2/authorize", Browser, limited(DEFAULT), pages::authorize),
    route!(POST "/oauth2/authorize", Browser, limited(LOGIN), pages::authorize),
    route!(POST "/oauth2/authorize/mfa", Browser, limited(LOGIN), pages::second_factor),
    route!(POST "/oauth2/authorize/passkey/start", Browser, limited(LOGIN), pages::passkey_start),
    route!(POST "/oauth2/authorize/passkey", Browser, limited(LOGIN), pages::passkey),
    route!(POST "/oauth2/consent", Browser, limited(DEFAULT), pages::consent),
    route!(GET "/oauth2/logout", Browser, limited(DEFAULT), pages::logout),
    route!(POST "/oauth2/logout", Browser, limited(DEFAULT), pages::logout),
    route!(GET "/oauth2/userinfo", UserInfo, limited(DEFAULT), pages::userinfo),
    route!(POST "/oauth2/userinfo", UserInfo, limited(DEFAULT), pages::userinfo),
    route!(GET "/oauth2/assets/{asset}", Public, EXEMPT, pages::asset),
    route!(GET "/api/v1/consents", Bearer, limited(DEFAULT), pages::consents),
    // The account's address: verification and change (mailed links, their pages, and the API).
    route!(POST "/api/v1/auth/email/verify", Public, limited(DEFAULT), email::verify),
    route!(POST "/api/v1/users/verify-email/resend", Bearer, limited(RECOVERY), email::resend),
    route!(POST "/api/v1/users/email/change", Bearer, limited(DEFAULT), email::change),
    route!(POST "/api/v1/auth/email/change/confirm", Public, limited(DEFAULT), email::confirm_change),
    route!(GET "/account/verify-email", Browser, limited(DEFAULT), account::verify_email),
    route!(POST "/account/verify-email", Browser, limited(DEFAULT), account::verify_email),
    route!(GET "/account/confirm-email-change", Browser, limited(DEFAULT), account::confirm_email_change),
    route!(POST "/account/confirm-email-change", Browser, limited(DEFAULT), account::confirm_email_change),
    route!(DELETE "/api/v1/consents/{client_id}", Bearer, limited(DEFAULT), pages::revoke_consent),
    // Password reset: the forms that send mail count against the `recovery` class.
    route!(POST "/api/v1/auth/password/forgot", Public, limited(RECOVERY), password::forgot),
    route!(POST "/api/v1/auth/password/reset", Public, limited(DEFAULT), password::reset),
    // The account's second factors (a browser session).
    route!(GET "/account/security", Browser, limited(DEFAULT), security::page),
    route!(POST "/account/security/sign-in", Browser, limited(LOGIN), security::sign_in),
    route!(POST "/account/security/totp", Browser, limited(DEFAULT), security::totp_start),
    route!(POST "/account/security/totp/confirm", Browser, limited(LOGIN), security::totp_confirm),
    route!(POST "/account/security/totp/remove", Browser, limited(LOGIN), security::totp_remove),
    route!(POST "/account/security/passkeys/start", Browser, limited(DEFAULT), security::passkey_start),
    route!(POST "/account/security/passkeys", Browser, limited(DEFAULT), security::passkey_finish),
    route!(POST "/account/security/passkeys/delete", Browser, limited(LOGIN), security::passkey_delete),
    route!(GET "/account/sign-up", Browser, limited(DEFAULT), account_pages::sign_up_page),
    route!(POST "/account/sign-up", Browser, limited(SIGNUP), account_pages::sign_up_submit),
    route!(GET "/account/forgot-password", Browser, limited(DEFAULT), account_pages::forgot_page),
    route!(POST "/account/forgot-password", Browser, limited(RECOVERY), account_pages::forgot_submit),
    route!(GET "/account/reset-password", Browser, limited(DEFAULT), account_pages::reset_page),
    route!(POST "/account/reset-password", Browser, limited(DEFAULT), account_pages::reset_submit),
    // Passkeys: a signed-in user's, and signing in with one (the `login` class, like a login).
    route!(POST "/api/v1/mfa/webauthn/register/start", Bearer, limited(DEFAULT), webauthn::register_start),
    route!(POST "/api/v1/mfa/webauthn/register/finish", Bearer, limited(DEFAULT), webauthn::register_finish),
    route!(GET "/api/v1/mfa/webauthn/credentials", Bearer, limited(DEFAULT), webauthn::credentials),
    route!(DELETE "/api/v1/mfa/webauthn/credentials/{id}", Bearer, limited(DEFAULT), webauthn::delete_credential),
    route!(POST "/api/v1/auth/webauthn/start", Public, limited(LOGIN), webauthn::sign_in_start),
    route!(POST "/api/v1/auth/webauthn/finish", Public, limited(LOGIN), webauthn::sign_in_finish),
    // Second factors: TOTP and its recovery codes (the second step of a login is above).
    route!(GET "/api/v1/mfa", Bearer, limited(DEFAULT), mfa::summary),
    route!(POST "/api/v1/mfa/totp", Bearer, limited(DEFAULT), mfa::enrol),
    route!(POST "/api/v1/mfa/totp/confirm", Bearer, limited(DEFAULT), mfa::confirm),
    route!(DELETE "/api/v1/mfa/totp", Bearer, limited(DEFAULT), mfa::remove),
    route!(POST "/api/v1/mfa/recovery-codes", Bearer, limited(DEFAULT), mfa::recovery_codes),
    route!(DELETE "/api/v1/users/{user_id}/mfa", Admin, limited(DEFAULT), mfa::admin_remove),
    #[cfg(feature = "test-hooks")]
    route!(POST "/api/v1/_test/fail/{actor}", Public, EXEMPT, ops::test_fail),
];

/// Routes that are not part of the public API (left out of the OpenAPI document).
pub fn is_internal(template: &str) -> bool {
    template.starts_with("/api/v1/_test/")
}

static ROUTER: LazyLock<Router<RouteDef>> = LazyLock::new(|| Router::new(ROUTES));

/// Finds the route for `method` and `path`, with the values of its placeholders.
/// A path that exists under another method is 405; anything else is 404.
pub fn find(method: &Method, path: &str) -> Result<(&'static RouteDef, Vec<String>), ApiError> {
    ROUTER.find(method, path)
}
