//! The state every request handler shares: configuration, actor handles and metrics.

use std::sync::Arc;

use auth_actors::Services;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::passwords::PasswordHasher;

/// Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub services: Services,
    pub metrics: Arc<Metrics>,
    /// Bounded Argon2id hashing, off the async runtime.
    pub hasher: PasswordHasher,
}
