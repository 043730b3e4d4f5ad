//! Integration tests: the real server on a random port, real PostgreSQL and Redis.
//! One module per area; test names read as sentences.

mod authenticator;
mod helpers;
mod mail;

mod access;
mod account_pages;
mod attacks;
mod authz;
mod email_change;
mod hardening;
mod health;
mod http;
mod input;
mod jwks;
mod keys;
mod limits;
mod login;
mod logs;
mod mail_delivery;
mod metrics;
mod mfa_login;
mod mfa_pages;
mod oauth;
mod oidc;
mod openapi;
mod password_policy;
mod password_reset;
mod protocol;
mod redis_modes;
mod refresh;
mod roles;
mod sessions;
mod signup;
mod standards;
mod startup;
mod supervision;
mod surface;
mod third_party;
mod totp;
mod verify_email;
mod webauthn;
