//! auth-service: a standalone authentication server that issues JWT access tokens and
//! rotating refresh tokens and publishes its keys as a JWKS.
//!
//! # Layout
//!
//! From the wire inwards (each layer imports only the ones below it):
//!
//! - [`server`]: the accept loop — connections, limits, the request id, the access log — which
//!   finds the route in [`routes::table`] and hands the request to [`routes::dispatch`].
//! - [`routes`]: the route table, the one access decision ([`routes::access`]) and the
//!   first-party handlers; each parses, calls a flow, renders.
//! - [`oauth`]: the OAuth 2.1 / OpenID provider, laid out by endpoint, with its own handlers and
//!   hosted pages ([`pages`] renders them from `templates/`).
//! - [`flows`]: the first-party account flows (signup, login, refresh, logout, the token
//!   verifier, roles, account), between HTTP and the actors.
//! - [`http`]: the request and response types, the route matcher, and the one mapping from
//!   errors to status codes.
//! - Leaves, importing no layer above: [`config`] (typed configuration, layered defaults <
//!   `config/*.toml` < environment), [`domain`] (checked values the API and the CLI both parse,
//!   and the network [`domain::Peer`]), [`secret`] (opaque secrets), [`sealing`] (secrets sealed at rest), [`authz`] (the caches filed
//!   under the authorization epoch), [`passwords`] (Argon2id off the async runtime),
//!   [`uri`] (the rules for the URIs clients register), [`metrics`] and [`telemetry`].
//! - [`startup`] runs one instance (actor tree, HTTP server, shutdown), [`app`] is the state every
//!   request shares, and [`cli`] holds the commands of the one binary; `main.rs` only calls
//!   [`cli::main`].
//!
//! The actors themselves (supervisor, KeyManager, Database, Redis, Health) live in the
//! `auth-actors` crate.

pub mod app;
pub mod authz;
pub mod cli;
pub mod config;
pub mod domain;
pub mod flows;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod oauth;
pub mod pages;
pub mod passwords;
pub mod routes;
pub mod sealing;
pub mod secret;
pub mod server;
pub mod startup;
pub mod telemetry;
pub mod uri;
