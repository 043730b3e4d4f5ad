//! The raw hyper front end: accept loop, request context, routing table, responses and the
//! single error-to-status mapping.
//!
//! Architecture Invariant: nothing under `http` talks to PostgreSQL or Redis; requests reach
//! them only as actor messages, through the handles in [`crate::app::App`].

pub mod error;
pub mod request;
pub mod response;
pub mod router;
pub mod server;

pub use error::ApiError;
pub use request::Request;
pub use response::Response;
