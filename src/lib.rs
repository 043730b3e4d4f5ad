//! auth-service: a standalone authentication server that issues JWT access tokens and
//! rotating refresh tokens and publishes its keys as a JWKS.
//!
//! # Layout
//!
//! - [`cli`]: the commands of the one binary (`serve`, `migrate`, `seed-roles`,
//!   `create-superuser`, `keys ...`, `hash calibrate`). `main.rs` only calls [`cli::main`].
//! - [`config`]: typed configuration, layered defaults < `config/*.toml` < environment.
//! - [`domain`]: the checked values (username, email, role name, password) the API and the CLI
//!   both parse.
//! - [`startup`]: runs one instance — actor tree, HTTP server, shutdown.
//! - [`http`]: the raw hyper front end — accept loop, routing table, request/response
//!   helpers, and the one mapping from errors to status codes.
//! - [`routes`]: one handler per route; each parses, calls a flow, renders. The dispatcher
//!   applies the route's rate limit and access first.
//! - [`flows`]: the business logic of each request (login, refresh, ...), between HTTP and
//!   the actors.
//! - [`passwords`]: Argon2id hashing off the async runtime, bounded.
//! - [`authz`]: callers' current roles and OAuth clients, cached under the authorization epoch.
//! - [`remote_keys`]: clients' public keys fetched from their `jwks_uri`.
//! - [`uri`]: the rules for the URIs clients register and send (redirect URIs, `jwks_uri`).
//! - [`metrics`], [`telemetry`]: Prometheus metrics and logs.
//!
//! The actors themselves (supervisor, KeyManager, UserStore, RateLimiter, Health) live in the
//! `auth-actors` crate.

pub mod app;
pub mod authz;
pub mod cli;
pub mod config;
pub mod domain;
pub mod flows;
pub mod http;
pub mod metrics;
pub mod oauth;
pub mod pages;
pub mod passwords;
pub mod routes;
pub mod secret;
pub mod server;
pub mod startup;
pub mod telemetry;
pub mod uri;
