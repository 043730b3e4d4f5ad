//! Integration tests: the real server on a random port, real PostgreSQL and Redis.
//! One module per area; test names read as sentences.

mod helpers;

mod health;
mod http;
mod jwks;
mod limits;
mod login;
mod refresh;
mod roles;
mod sessions;
mod signup;
mod startup;
mod supervision;
