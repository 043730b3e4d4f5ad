//! The KeyManager actor: owns the key directory and publishes an immutable [`KeySet`]
//! snapshot that signs tokens and serves the JWKS.
//!
//! Signing does not go through this actor's mailbox: the actor publishes each new snapshot on
//! a watch channel and [`KeyManagerHandle::sign`] signs with the current snapshot on a blocking
//! thread, so RSA work neither serialises requests nor blocks the async runtime. The mailbox
//! carries only the rare messages: reload, status, and the test-only failure hook.
//!
//! Every load and poll also judges the key directory's permissions (`keys` module doc): under
//! [`PermissionPolicy::Refuse`] a directory that others could write, or a key they could read,
//! fails startup and, while serving, refuses the reload (the keys loaded before stay, readiness
//! says why); under [`PermissionPolicy::Warn`] each new finding is logged as a warning.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::watch;

use crate::cache::CacheCounters;
use crate::handle::{CallError, Endpoint};
use crate::keys::{self, Claims, JwksDocument, KeyError, KeySet, PermissionPolicy, TokenError, VerifyRules};
use crate::supervised::{Mail, Supervised};

/// Messages the KeyManager handles.
pub enum KeyManagerMsg {
    /// Re-read the key directory and publish the new snapshot; replies with the active kid, or
    /// the reason the directory was refused (no active key could be loaded, or `keys.json`
    /// could not be read, in which case the previous snapshot stays in force).
    Reload(RpcReplyPort<Result<String, String>>),
    /// Report the active kid and how many keys are published.
    Status(RpcReplyPort<KeyStatus>),
    /// Re-read the key directory if `keys.json` changed since the last load, if the last
    /// load was not whole, or if the permission findings changed (sent to itself every poll
    /// interval, so that `keys rotate` on a shared volume reaches every instance, a repaired
    /// key file is picked up, and a directory opened to others is noticed).
    Poll,
}

/// What [`KeyManagerMsg::Status`] answers.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    /// The signing key; empty when none could be loaded.
    pub active_kid: String,
    pub published: usize,
    /// What the last reload could not load or read; empty when the key directory is whole.
    pub problems: Vec<String>,
}

/// Startup arguments, reused on every restart.
#[derive(Clone)]
pub struct KeyManagerArgs {
    /// The mounted key directory.
    pub dir: PathBuf,
    /// `JWT_ACTIVE_KID`: overrides the metadata's active key when set.
    pub active_kid: Option<String>,
    /// `JWT_KEYS_ALLOW_INSECURE_PERMISSIONS`: whether a directory open to others is refused or
    /// only warned about.
    pub permissions: PermissionPolicy,
    /// Where snapshots are published; owned by the supervisor so it outlives restarts.
    pub publish: Arc<watch::Sender<Option<Arc<KeySet>>>>,
    /// How often `keys.json` is checked for changes.
    pub poll_interval: Duration,
    /// Tokens each snapshot remembers as verified.
    pub cache_capacity: usize,
    /// Hits, misses and evictions of those caches, across snapshots.
    pub cache_counters: CacheCounters,
}

/// The KeyManager's state.
pub struct KeyManager {
    args: KeyManagerArgs,
    /// Fingerprint of `keys.json` at the last load.
    stamp: Option<(std::time::SystemTime, u64)>,
    /// Why the last reload could not read `keys.json` at all, or refused the directory, if it
    /// did.
    unreadable: Option<String>,
    /// The permission findings at the last load, to notice a change of modes between polls.
    findings: Vec<String>,
}

impl KeyManager {
    fn load(args: &KeyManagerArgs) -> Result<Arc<KeySet>, KeyError> {
        let set = KeySet::load_with(&args.dir, args.active_kid.as_deref(), args.permissions)?;
        warn_insecure(&set);
        Ok(Arc::new(set.with_cache(args.cache_capacity, args.cache_counters.clone())))
    }
}

impl Supervised for KeyManager {
    type Msg = KeyManagerMsg;
    type Args = KeyManagerArgs;

    async fn start(myself: ActorRef<Mail<KeyManagerMsg>>, args: KeyManagerArgs) -> Result<Self, ActorProcessingErr> {
        let first_start = args.publish.borrow().is_none();
        let mut state = KeyManager {
            stamp: keys::metadata_stamp(&args.dir),
            findings: keys::permission_findings(&args.dir),
            args,
            unreadable: None,
        };
        if first_start {
            // Startup: the directory must be whole, or the service does not start.
            let set = Self::load(&state.args)?;
            state.args.publish.send_replace(Some(set));
        } else {
            // A restart while serving reloads like a poll does: a broken key file must not
            // keep the KeyManager (and so the service) down.
            let _ = reload(&mut state);
        }
        if !state.args.poll_interval.is_zero() {
            myself.send_interval(state.args.poll_interval, || Mail::Msg(KeyManagerMsg::Poll));
        }
        Ok(state)
    }

    async fn handle(&mut self, msg: KeyManagerMsg) -> Result<(), ActorProcessingErr> {
        match msg {
            KeyManagerMsg::Reload(reply) => {
                let _ = reply.send(reload(self));
            }
            KeyManagerMsg::Poll => {
                let whole = self.unreadable.is_none()
                    && self.args.publish.borrow().as_ref().is_some_and(|set| set.problems().is_empty());
                if !whole
                    || keys::metadata_stamp(&self.args.dir) != self.stamp
                    || keys::permission_findings(&self.args.dir) != self.findings
                {
                    let _ = reload(self);
                }
            }
            KeyManagerMsg::Status(reply) => {
                let snapshot = self.args.publish.borrow().clone();
                let mut status = match snapshot {
                    Some(set) => KeyStatus {
                        active_kid: set.active_kid().unwrap_or_default().to_string(),
                        published: set.kids().count(),
                        problems: set.problems().to_vec(),
                    },
                    None => KeyStatus { active_kid: String::new(), published: 0, problems: Vec::new() },
                };
                status.problems.extend(self.unreadable.iter().cloned());
                let _ = reply.send(status);
            }
        }
        Ok(())
    }
}

/// Reloads the key directory and publishes what it holds now. Keys `keys.json` no longer
/// publishes go at once, whatever else is wrong; a broken key file is reported (readiness, log)
/// and retried on every poll. Only an unreadable `keys.json` leaves the previous snapshot in
/// force, since nothing is then known to have changed.
fn reload(state: &mut KeyManager) -> Result<String, String> {
    let stamp = keys::metadata_stamp(&state.args.dir);
    state.findings = keys::permission_findings(&state.args.dir);
    let previous = state.args.publish.borrow().clone();
    let args = &state.args;
    match KeySet::reload(&args.dir, args.active_kid.as_deref(), previous.as_deref(), args.permissions) {
        Ok(set) => {
            if previous.as_ref().is_none_or(|old| old.warnings() != set.warnings()) {
                warn_insecure(&set);
            }
            let set = set.with_cache(state.args.cache_capacity, state.args.cache_counters.clone());
            state.stamp = stamp;
            state.unreadable = None;
            let kid = set.active_kid().map(str::to_string);
            let problems = set.problems().to_vec();
            let changed = previous.as_ref().is_none_or(|old| {
                old.jwks().etag != set.jwks().etag
                    || old.active_kid() != set.active_kid()
                    || old.problems() != problems
                    || old.warnings() != set.warnings()
            });
            if changed {
                state.args.publish.send_replace(Some(Arc::new(set)));
                match (&kid, problems.is_empty()) {
                    (Some(kid), true) => tracing::info!(active_kid = %kid, "keys reloaded"),
                    _ => tracing::error!(
                        active_kid = kid.as_deref().unwrap_or("none"),
                        problems = %problems.join("; "),
                        "keys reloaded with problems; retrying on every poll"
                    ),
                }
            }
            kid.ok_or_else(|| problems.join("; "))
        }
        Err(e) => {
            state.stamp = stamp;
            let reason = e.to_string();
            if state.unreadable.as_deref() != Some(reason.as_str()) {
                tracing::error!(error = %reason, "key reload refused; keeping the previous keys");
            }
            state.unreadable = Some(reason.clone());
            Err(reason)
        }
    }
}

/// Logs, loudly, the permission findings a snapshot was loaded past.
fn warn_insecure(set: &KeySet) {
    if !set.warnings().is_empty() {
        tracing::warn!(
            findings = %set.warnings().join("; "),
            "the key directory is open to others and loaded anyway (JWT_KEYS_ALLOW_INSECURE_PERMISSIONS=true): \
             whoever can write it can add a signing key, whoever can read a key can sign as this service"
        );
    }
}

/// Why a reload asked for did not leave an active key.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Call(#[from] CallError),
    /// The directory was read but no active key could be loaded, or `keys.json` could not be
    /// read (the previous snapshot then stays in force).
    #[error("key reload refused: {0}")]
    Refused(String),
}

/// Errors of the signing path.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// The typed handle to the KeyManager.
#[derive(Clone)]
pub struct KeyManagerHandle {
    endpoint: Endpoint<KeyManagerMsg>,
    keys: watch::Receiver<Option<Arc<KeySet>>>,
}

impl KeyManagerHandle {
    pub(crate) fn new(endpoint: Endpoint<KeyManagerMsg>, keys: watch::Receiver<Option<Arc<KeySet>>>) -> Self {
        KeyManagerHandle { endpoint, keys }
    }

    /// The current key snapshot. Fails promptly while the KeyManager is down, so that no
    /// request is served from keys whose owner is restarting.
    pub fn snapshot(&self) -> Result<Arc<KeySet>, CallError> {
        if !self.endpoint.is_up() {
            return Err(CallError::Unavailable(self.endpoint.name()));
        }
        self.keys.borrow().clone().ok_or(CallError::Unavailable(self.endpoint.name()))
    }

    /// The JWKS document of the current snapshot (cached bytes and ETag).
    pub fn jwks(&self) -> Result<JwksDocument, CallError> {
        Ok(self.snapshot()?.jwks().clone())
    }

    /// Signs `claims` with the active key on a blocking thread.
    pub async fn sign<C: Serialize + Send + 'static>(&self, typ: &'static str, claims: C) -> Result<String, SignError> {
        let set = self.snapshot()?;
        tokio::task::spawn_blocking(move || set.sign(typ, &claims))
            .await
            .map_err(|_| SignError::Token(TokenError::Signing))?
            .map_err(SignError::Token)
    }

    /// Verifies a token against the current snapshot and decodes its claims. Verification is
    /// cheap (tens of µs, nothing on a cache hit) and runs inline.
    pub fn verify<C: Claims>(&self, token: &str, rules: &VerifyRules) -> Result<Arc<C>, SignError> {
        Ok(self.snapshot()?.verify(token, rules)?)
    }

    /// Asks the KeyManager to re-read the key directory; the active kid afterwards.
    pub async fn reload(&self) -> Result<String, ReloadError> {
        self.endpoint.call(KeyManagerMsg::Reload).await?.map_err(ReloadError::Refused)
    }

    pub async fn status(&self) -> Result<KeyStatus, CallError> {
        self.endpoint.call(KeyManagerMsg::Status).await
    }

    #[cfg(feature = "failure-hook")]
    pub fn fail(&self, reason: &str) -> Result<(), CallError> {
        self.endpoint.fail(reason)
    }
}
