//! Password hashing with Argon2id, off the async runtime and bounded.
//!
//! At most `concurrency` hashes run at once, each on a blocking thread; a request that cannot
//! get a slot within `queue_timeout` is refused (503 + `Retry-After`) instead of queueing
//! without bound. Unknown users are checked against a dummy hash made with the same
//! parameters, so a login costs the same argon2 work whether or not the user exists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::PasswordConfig;
use crate::metrics::Metrics;

/// Why a hash could not be computed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing is saturated")]
    Busy,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// The result of checking a password.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    /// Wrong password (or unknown user).
    No,
    /// Right password, hash made with the current parameters.
    Yes,
    /// Right password, but the stored hash uses other parameters: store this new hash.
    YesRehashed(String),
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    dummy_hash: Arc<String>,
    metrics: Arc<Metrics>,
}

impl PasswordHasher {
    pub fn new(config: &PasswordConfig, metrics: Arc<Metrics>) -> Result<Self, HashError> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|e| HashError::Internal(e.to_string()))?;
        let dummy_hash = Arc::new(hash_with(&params, "dummy password for unknown users")?);
        Ok(PasswordHasher {
            params,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            queue_timeout: config.queue_timeout,
            dummy_hash,
            metrics,
        })
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params.clone();
        self.run(move || hash_with(&params, &password)).await
    }

    /// Checks `password` against `stored` (or against the dummy hash when the user is
    /// unknown, so that both cases cost one argon2 verification).
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<Verified, HashError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.as_str().to_string());
        let params = self.params.clone();
        self.run(move || {
            let ok = verify_with(&stored, &password);
            Ok(match (ok, known) {
                (true, true) if needs_rehash(&stored, &params) => Verified::YesRehashed(hash_with(&params, &password)?),
                (true, true) => Verified::Yes,
                _ => Verified::No,
            })
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        self.metrics.hash_queue.inc();
        let permit = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
        let permit = match permit {
            Ok(Ok(p)) => p,
            _ => {
                self.metrics.hash_queue.dec();
                self.metrics.hash_rejected.inc();
                return Err(HashError::Busy);
            }
        };
        let metrics = self.metrics.clone();
        let result = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let out = job();
            metrics.hash_duration.observe(started.elapsed().as_secs_f64());
            drop(permit);
            out
        })
        .await;
        self.metrics.hash_queue.dec();
        result.map_err(|e| HashError::Internal(e.to_string()))?
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// Hashes synchronously (CLI and blocking threads only).
pub fn hash_with(params: &Params, password: &str) -> Result<String, HashError> {
    argon2(params)
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError::Internal(e.to_string()))
}

fn verify_with(stored: &str, password: &str) -> bool {
    let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(stored) else { return false };
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// Whether `stored` was made with other parameters (or another algorithm) than `params`.
fn needs_rehash(stored: &str, params: &Params) -> bool {
    let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(stored) else { return true };
    if parsed.algorithm.as_str() != "argon2id" {
        return true;
    }
    match Params::try_from(&parsed) {
        Ok(p) => p.m_cost() != params.m_cost() || p.t_cost() != params.t_cost() || p.p_cost() != params.p_cost(),
        Err(_) => true,
    }
}

/// Parameters from a config slice (CLI use).
pub fn params(config: &PasswordConfig) -> Result<Params, HashError> {
    Params::new(config.memory_kib, config.iterations, config.parallelism, None)
        .map_err(|e| HashError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_made_with_other_parameters_needs_rehash() {
        let cheap = Params::new(256, 1, 1, None).expect("params");
        let other = Params::new(512, 1, 1, None).expect("params");
        let h = hash_with(&cheap, "correct horse").expect("hash");
        assert!(verify_with(&h, "correct horse"));
        assert!(!verify_with(&h, "wrong horse"));
        assert!(!needs_rehash(&h, &cheap));
        assert!(needs_rehash(&h, &other));
    }
}
