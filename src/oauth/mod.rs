//! The OAuth 2.1 authorization server and OpenID provider (SPEC §7), one module laid out by
//! endpoint. Read in this order:
//!
//! - [`protocol`]: the vocabulary every endpoint shares (errors, the form, a registered
//!   client, what the service implements); imports no endpoint.
//! - [`client_auth`]: who the client is (RFC 6749 §2.3, RFC 7523), with the per-instance client
//!   cache and [`remote_keys`], the keys clients publish at their `jwks_uri`.
//! - [`token`]: `POST /oauth2/token` and its three grants, the code exchange included.
//! - [`authorize`]: the browser flow (`/oauth2/authorize`, sign-in, consent) that issues codes.
//! - [`openid`]: the ID token, userinfo, RP-initiated sign-out and discovery.
//! - [`introspection`]: RFC 7662 introspection and RFC 7009 revocation.
//! - [`registry`]: the client registry (RFC 7591 metadata), for admins and the CLI.
//! - [`routes`]: the HTTP face of all of it, hosted pages included.
//!
//! Architecture Invariant: the provider builds on the first-party flows (sessions, token
//! issuance, the password check, the verifier in [`crate::flows`]); no flow imports the provider
//! but the verifier, which asks [`client_auth::client_entry`] whether a token's client still
//! exists.

pub mod authorize;
pub mod client_auth;
pub mod introspection;
pub mod openid;
pub mod protocol;
pub mod registry;
pub mod remote_keys;
pub mod routes;
pub mod token;
