//! The first-party account flows (`/api/v1/...`), one module per flow, between HTTP and the
//! actors. The OAuth / OpenID provider is [`crate::oauth`]; it builds on [`tokens`], [`login`],
//! [`logout`] and [`authenticate`] from here.
//! A flow takes parsed input (whose values are already valid, see [`crate::domain`]), runs
//! actor operations (always through typed handles, always with a timeout), and returns plain
//! data or a [`FlowError`](error::FlowError), which says what went wrong in the domain's terms;
//! it knows nothing of status codes or headers.
//!
//! Architecture Invariant: nothing under `flows` names an HTTP status or builds a response;
//! `crate::http::error` is the only mapping from a [`FlowError`](error::FlowError) to one.
//!
//! - [`signup`]: validate → hash → store.
//! - [`login`]: rate limit → look up → reserve an attempt → verify → sign → store session.
//! - [`refresh`]: hash the presented token → compare-and-swap rotation → sign.
//! - [`logout`]: revoke a family or all of them, blacklist or fence off access tokens.
//! - [`authenticate`]: the one verifier every protected route uses, and the access rules.
//! - [`error`]: the domain error every flow returns.
//! - [`account`]: profile update, user deletion, history, sessions.
//! - [`email`]: verifying the account's address, and changing it on confirmation.
//! - [`roles`]: roles, grants, the role check, the caller's principal, security events.
//! - [`tokens`]: access-token claims, refresh-token secrets and the refresh cookie.
//! - [`limits`]: per-route-class rate limits.
//! - [`mfa`]: the second step of a sign-in (`mfa_token`), `amr` and `acr`.
//! - [`totp`]: TOTP as a second factor, and its recovery codes.
//! - [`webauthn`]: passkeys, as a second factor and passwordless.
//! - [`password_reset`]: a reset link by mail (answered alike for every address), and the reset.

pub mod account;
pub mod authenticate;
pub mod email;
pub mod error;
pub mod limits;
pub mod login;
pub mod logout;
pub mod mfa;
pub mod password_reset;
pub mod refresh;
pub mod roles;
pub mod signup;
pub mod tokens;
pub mod totp;
pub mod webauthn;
