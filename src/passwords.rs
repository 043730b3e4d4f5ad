//! Password hashing with Argon2id, off the async runtime and bounded.
//!
//! A fixed pool of `concurrency` OS threads does all hashing. Each thread owns its Argon2
//! working memory (m KiB) and reuses it for every job, so the memory of the hashing pool is
//! allocated once and stays bounded at `concurrency × m` — never the per-hash allocations that a
//! general allocator would keep around per thread. A request that cannot get a slot within
//! `queue_timeout` is refused (503 + `Retry-After`) instead of queueing without bound. Unknown
//! users are checked against a dummy hash made with the same parameters, so a login costs the
//! same argon2 work whether or not the user exists.
//!
//! An idle thread frees its memory after a couple of seconds; the binary's allocator (jemalloc,
//! see `main.rs`) hands freed pages back to the system about a second later.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), the same format the
//! `argon2` crate writes, so hashes made elsewhere verify here and the other way round.
//!
//! The checks of a new password against known ones live beside it: [`blocklist`] (the bundled
//! list, consulted by [`crate::domain::Password::new`]) and [`breach`] (the k-anonymity range
//! API, which the flows that set a password call).

pub mod blocklist;
pub mod breach;
mod list_key;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordVerifier as _;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use tokio::sync::{Semaphore, oneshot};

use crate::config::PasswordConfig;
use crate::metrics::Metrics;

const SALT_LEN: usize = 16;
/// A hashing thread that has had no job for this long frees its working memory.
const IDLE_RELEASE: Duration = Duration::from_secs(2);
const OUTPUT_LEN: usize = 32;

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

/// A unit of work for a hashing thread, given that thread's reusable memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    dummy_hash: Arc<String>,
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

impl PasswordHasher {
    /// Starts the hashing threads. They end when the last clone of the hasher is dropped.
    pub fn new(config: &PasswordConfig, metrics: Arc<Metrics>) -> Result<Self, HashError> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|e| HashError::Internal(e.to_string()))?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..config.concurrency.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let mut memory: Vec<Block> = Vec::new();
                    loop {
                        let job = match queue.lock() {
                            Ok(rx) => rx.recv_timeout(IDLE_RELEASE),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            // Idle: give the working memory back.
                            Err(mpsc::RecvTimeoutError::Timeout) => memory = Vec::new(),
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                })
                .map_err(|e| HashError::Internal(e.to_string()))?;
        }
        let mut memory = Vec::new();
        let dummy_hash = Arc::new(hash_with_memory(&params, "dummy password for unknown users", &mut memory)?);
        Ok(PasswordHasher {
            params,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            queue_timeout: config.queue_timeout,
            dummy_hash,
            jobs,
            metrics,
        })
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params.clone();
        self.run(move |memory| hash_with_memory(&params, &password, memory)).await
    }

    /// Checks `password` against `stored` (or against the dummy hash when the user is
    /// unknown, so that both cases cost one argon2 verification).
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<Verified, HashError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.as_str().to_string());
        let params = self.params.clone();
        self.run(move |memory| {
            let ok = verify_with_memory(&stored, &password, memory);
            Ok(match (ok, known) {
                (true, true) if needs_rehash(&stored, &params) => {
                    Verified::YesRehashed(hash_with_memory(&params, &password, memory)?)
                }
                (true, true) => Verified::Yes,
                _ => Verified::No,
            })
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> Result<T, HashError> + Send + 'static,
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
        let (tx, rx) = oneshot::channel();
        let metrics = self.metrics.clone();
        let sent = self.jobs.send(Box::new(move |memory: &mut Vec<Block>| {
            let started = Instant::now();
            let out = job(memory);
            metrics.hash_duration.observe(started.elapsed().as_secs_f64());
            drop(permit);
            let _ = tx.send(out);
        }));
        let result = match sent {
            Ok(()) => rx.await.map_err(|_| HashError::Internal("hashing thread ended".into())),
            Err(_) => Err(HashError::Internal("hashing threads have stopped".into())),
        };
        self.metrics.hash_queue.dec();
        result?
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// Hashes with `memory` as Argon2's working memory (grown to the parameters' size once).
fn hash_with_memory(params: &Params, password: &str, memory: &mut Vec<Block>) -> Result<String, HashError> {
    let mut salt = [0u8; SALT_LEN];
    SystemRandom::new().fill(&mut salt).map_err(|_| HashError::Internal("no randomness".into()))?;
    let mut out = [0u8; OUTPUT_LEN];
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    argon2(params)
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut memory[..params.block_count()])
        .map_err(|e| HashError::Internal(e.to_string()))?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        B64.encode(salt),
        B64.encode(out)
    ))
}

/// Hashes synchronously with fresh memory (CLI and tools).
pub fn hash_with(params: &Params, password: &str) -> Result<String, HashError> {
    hash_with_memory(params, password, &mut Vec::new())
}

/// Checks an Argon2id PHC string with reusable memory; other variants fall back to the
/// library's own verifier.
fn verify_with_memory(stored: &str, password: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(stored) else { return false };
    if parsed.algorithm.as_str() != "argon2id" || parsed.version != Some(0x13) {
        return Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
    }
    let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(&parsed), parsed.salt, parsed.hash) else {
        return false;
    };
    let salt: &[u8] = salt.as_ref();
    let expected = expected.as_bytes();
    let Ok(params) = Params::new(params.m_cost(), params.t_cost(), params.p_cost(), Some(expected.len())) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    if argon2(&params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..params.block_count()])
        .is_err()
    {
        return false;
    }
    aws_lc_rs::constant_time::verify_slices_are_equal(&out, expected).is_ok()
}

/// Checks a password synchronously with fresh memory (CLI and tools).
pub fn verify_with(stored: &str, password: &str) -> bool {
    verify_with_memory(stored, password, &mut Vec::new())
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

    #[test]
    fn hashes_are_interchangeable_with_the_argon2_crate() {
        use argon2::password_hash::PasswordHasher as _;
        let params = Params::new(256, 1, 1, None).expect("params");
        let ours = hash_with(&params, "correct horse").expect("hash");
        let parsed = argon2::password_hash::phc::PasswordHash::new(&ours).expect("phc");
        assert!(argon2(&params).verify_password(b"correct horse", &parsed).is_ok());
        let theirs = argon2(&params).hash_password(b"correct horse").expect("hash").to_string();
        assert!(verify_with(&theirs, "correct horse"));
        assert!(!verify_with(&theirs, "wrong horse"));
    }
}
