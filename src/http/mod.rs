//! The lowest layer of the front end: the request context (parsing bodies, queries, cookies,
//! the peer's address), responses, the route matcher, and the single error-to-status mapping.
//! The accept loop is [`crate::server`]; the route table is [`crate::routes::table`].
//!
//! Architecture Invariant: nothing under `http` talks to PostgreSQL or Redis; requests reach
//! them only as actor messages, through the handles in [`crate::app::App`].

pub mod error;
pub mod request;
pub mod response;
pub mod router;

pub use error::ApiError;
pub use request::Request;
pub use response::Response;
