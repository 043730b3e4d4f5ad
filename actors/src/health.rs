//! The Health actor: knows the state of every child (told by the supervisor) and answers
//! readiness by probing PostgreSQL, Redis and the keys, each under a short timeout.
//!
//! Probes run in a task of their own so that a slow dependency delays only the readiness
//! answer it concerns, never the actor's mailbox.

use std::collections::BTreeMap;
use std::time::Duration;

use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::Instrument;

use crate::db::DatabaseHandle;
use crate::handle::{CallError, Endpoint};
use crate::key_manager::KeyManagerHandle;
use crate::redis::RedisHandle;
use crate::supervised::{Mail, Supervised};

/// The life state of one supervised child, as the supervisor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildState {
    Running,
    /// Failed and waiting for its restart after a backoff.
    Restarting,
    /// Given up on: the restart-intensity limit tripped.
    Failed,
}

/// The readiness verdict: one entry per part, `"ok"` or the reason it is not.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub ready: bool,
    pub details: BTreeMap<&'static str, String>,
}

/// Messages the Health actor handles.
pub enum HealthMsg {
    /// A child (named `kind` or `kind-N`) changed state.
    ChildState { child: String, state: ChildState },
    /// Probe every dependency and report readiness.
    Readiness(RpcReplyPort<Readiness>),
}

/// Startup arguments, reused on every restart.
#[derive(Clone)]
pub struct HealthArgs {
    pub keys: KeyManagerHandle,
    pub db: DatabaseHandle,
    pub redis: RedisHandle,
    /// Bound on each probe.
    pub probe_timeout: Duration,
    /// Child states known when this instance starts (the supervisor's view).
    pub children: BTreeMap<String, ChildState>,
}

/// The Health actor's state: its arguments, the children's states kept current.
pub struct Health {
    args: HealthArgs,
}

impl Supervised for Health {
    type Msg = HealthMsg;
    type Args = HealthArgs;

    async fn start(_: ActorRef<Mail<HealthMsg>>, args: HealthArgs) -> Result<Self, ActorProcessingErr> {
        Ok(Health { args })
    }

    async fn handle(&mut self, msg: HealthMsg) -> Result<(), ActorProcessingErr> {
        match msg {
            HealthMsg::ChildState { child, state } => {
                self.args.children.insert(child, state);
            }
            HealthMsg::Readiness(reply) => {
                let args = self.args.clone();
                tokio::spawn(
                    async move {
                        let _ = reply.send(probe(&args).await);
                    }
                    .in_current_span(),
                );
            }
        }
        Ok(())
    }
}

async fn probe(args: &HealthArgs) -> Readiness {
    let t = args.probe_timeout;
    let pg = ping(t, args.db.ping());
    let redis = ping(t, args.redis.ping());
    let keys = async {
        match tokio::time::timeout(t, args.keys.status()).await {
            Ok(Ok(s)) if s.active_kid.is_empty() => format!("no active key: {}", s.problems.join("; ")),
            Ok(Ok(s)) if s.problems.is_empty() => "ok".to_string(),
            Ok(Ok(s)) => format!("{DEGRADED}: {}", s.problems.join("; ")),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timeout".to_string(),
        }
    };
    let (pg, redis, keys) = tokio::join!(pg, redis, keys);
    let down: Vec<String> = args
        .children
        .iter()
        // The Mailer is not needed to serve requests (mail waits in the outbox): a Mailer that
        // is restarting keeps no instance out of rotation.
        .filter(|(name, s)| **s != ChildState::Running && name.as_str() != "mailer")
        .map(|(name, s)| format!("{name} {}", if *s == ChildState::Failed { "failed" } else { "restarting" }))
        .collect();
    let actors = if down.is_empty() { "ok".to_string() } else { down.join(", ") };
    let mut details = BTreeMap::new();
    details.insert("postgres", pg);
    details.insert("redis", redis);
    details.insert("keys", keys);
    details.insert("actors", actors);
    // A degraded key directory still signs and verifies with every key it publishes: the
    // instance stays in rotation, and the detail tells the operator what to repair.
    let ready = details.values().all(|v| v == "ok" || v.starts_with(DEGRADED));
    Readiness { ready, details }
}

/// The readiness detail of a dependency's ping: `ok`, why it failed, or `timeout`.
async fn ping<E: std::fmt::Display>(timeout: Duration, check: impl Future<Output = Result<(), E>>) -> String {
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timeout".to_string(),
    }
}

/// The readiness detail of a part that serves correctly but needs an operator's attention.
pub const DEGRADED: &str = "degraded";

/// The typed handle to the Health actor.
#[derive(Clone)]
pub struct HealthHandle {
    endpoint: Endpoint<HealthMsg>,
}

impl HealthHandle {
    pub(crate) fn new(endpoint: Endpoint<HealthMsg>) -> Self {
        HealthHandle { endpoint }
    }

    pub async fn readiness(&self) -> Result<Readiness, CallError> {
        self.endpoint.call(HealthMsg::Readiness).await
    }

    pub(crate) fn child_state(&self, child: String, state: ChildState) {
        let _ = self.endpoint.cast(HealthMsg::ChildState { child, state });
    }

    #[cfg(feature = "failure-hook")]
    pub fn fail(&self, reason: &str) -> Result<(), CallError> {
        self.endpoint.fail(reason)
    }
}
