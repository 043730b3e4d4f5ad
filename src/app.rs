//! The state every request handler shares: configuration, actor handles and metrics.

use std::sync::Arc;

use auth_actors::Services;

use crate::config::Config;
use crate::metrics::Metrics;

/// Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub services: Services,
    pub metrics: Arc<Metrics>,
}
