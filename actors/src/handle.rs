//! The calling side of every actor: a slot that the supervisor fills and empties as the actor
//! starts and dies, and an [`Endpoint`] that calls through it with a timeout and a bound on
//! calls in flight.
//!
//! Typed handles (`KeyManagerHandle`, `DatabaseHandle`, ...) wrap an `Endpoint` and are the
//! only way the rest of the program talks to an actor. Because the slot outlives any one actor
//! instance, a handle cloned at startup keeps working across restarts; while an actor is down
//! the slot is empty and calls fail at once with [`CallError::Unavailable`] instead of hanging.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorId, ActorRef, RpcReplyPort, SpawnErr};

use crate::metrics::ActorMetrics;
use crate::supervised::{AsActor, Mail, Supervised};

/// Why a call to an actor did not produce a reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The actor is not running (restarting after a failure, or stopped).
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    /// The actor did not answer within the call timeout.
    #[error("{0} did not answer in time")]
    Timeout(&'static str),
    /// Too many calls are already waiting on the actor.
    #[error("{0} is saturated")]
    Overloaded(&'static str),
}

/// Where the supervisor publishes the current instance of one actor, whose messages are `M`.
pub struct Slot<M: Send + 'static>(RwLock<Option<ActorRef<Mail<M>>>>);

impl<M: Send + 'static> Default for Slot<M> {
    fn default() -> Self {
        Slot(RwLock::new(None))
    }
}

impl<M: Send + 'static> Slot<M> {
    /// Empties the slot: the instance it held is gone.
    pub(crate) fn clear(&self) {
        self.set(None);
    }

    fn set(&self, actor: Option<ActorRef<Mail<M>>>) {
        if let Ok(mut guard) = self.0.write() {
            *guard = actor;
        }
    }

    fn get(&self) -> Option<ActorRef<Mail<M>>> {
        self.0.read().ok().and_then(|g| g.clone())
    }

    /// Starts an instance of `A` linked to `supervisor` and publishes it here; returns the
    /// instance's id, by which the supervisor knows it.
    pub(crate) async fn spawn_linked<A: Supervised<Msg = M>>(
        &self,
        args: A::Args,
        supervisor: ActorCell,
    ) -> Result<ActorId, SpawnErr> {
        let (instance, _) = Actor::spawn_linked(None, AsActor::<A>(PhantomData), args, supervisor).await?;
        let id = instance.get_id();
        self.set(Some(instance));
        Ok(id)
    }
}

/// Calls one actor with a timeout and a cap on concurrent calls.
pub struct Endpoint<M: Send + 'static> {
    name: &'static str,
    slot: Arc<Slot<M>>,
    timeout: Duration,
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
    metrics: ActorMetrics,
}

impl<M: Send + 'static> Clone for Endpoint<M> {
    fn clone(&self) -> Self {
        Endpoint {
            name: self.name,
            slot: self.slot.clone(),
            timeout: self.timeout,
            in_flight: self.in_flight.clone(),
            capacity: self.capacity,
            metrics: self.metrics.clone(),
        }
    }
}

/// Decrements the in-flight count however the call ends (reply, timeout, or the caller's
/// future being dropped by a client that went away).
struct InFlight<'a> {
    count: &'a AtomicUsize,
    endpoint_name: &'static str,
    metrics: &'a ActorMetrics,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        // The gauge sums every endpoint of one kind (all Database workers share the label `user_store`).
        self.metrics.in_flight.get_or_create(&crate::metrics::actor_label(self.endpoint_name)).dec();
    }
}

impl<M: Send + 'static> Endpoint<M> {
    pub(crate) fn new(
        name: &'static str,
        slot: Arc<Slot<M>>,
        timeout: Duration,
        capacity: usize,
        metrics: ActorMetrics,
    ) -> Self {
        Endpoint { name, slot, timeout, in_flight: Arc::new(AtomicUsize::new(0)), capacity, metrics }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether an instance of the actor is currently running.
    pub fn is_up(&self) -> bool {
        self.slot.get().is_some()
    }

    /// Calls currently waiting for this actor.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts one call in flight, or refuses it when `capacity` are already waiting.
    fn enter(&self) -> Result<InFlight<'_>, CallError> {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = InFlight { count: &self.in_flight, endpoint_name: self.name, metrics: &self.metrics };
        self.metrics.in_flight.get_or_create(&crate::metrics::actor_label(self.name)).inc();
        if now > self.capacity {
            self.metrics.overloaded.get_or_create(&crate::metrics::actor_label(self.name)).inc();
            return Err(CallError::Overloaded(self.name));
        }
        Ok(guard)
    }

    /// Runs `work` in the caller's task under the rules of a call: refused at once while the
    /// actor is down, counted against the in-flight cap, bounded by the call timeout. For reads
    /// that use a resource the actor published (see `RedisHandle::check_tokens`).
    pub async fn run<R>(&self, work: impl std::future::Future<Output = R>) -> Result<R, CallError> {
        if !self.is_up() {
            return Err(CallError::Unavailable(self.name));
        }
        let _guard = self.enter()?;
        tokio::time::timeout(self.timeout, work).await.map_err(|_| self.timed_out())
    }

    /// Sends a request built by `build` and waits for the reply, at most the call timeout.
    pub async fn call<R: Send + 'static>(&self, build: impl FnOnce(RpcReplyPort<R>) -> M) -> Result<R, CallError> {
        let actor = self.slot.get().ok_or(CallError::Unavailable(self.name))?;
        let _guard = self.enter()?;
        match actor.call(|reply| Mail::Msg(build(reply)), Some(self.timeout)).await {
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(CallResult::Timeout) => Err(self.timed_out()),
            // The actor died between the slot read and the reply, or dropped the reply port.
            Ok(CallResult::SenderError) | Err(_) => Err(CallError::Unavailable(self.name)),
        }
    }

    /// Counts a call that got no answer in time.
    fn timed_out(&self) -> CallError {
        self.metrics.call_timeouts.get_or_create(&crate::metrics::actor_label(self.name)).inc();
        CallError::Timeout(self.name)
    }

    /// Sends a message without waiting for any reply.
    pub fn cast(&self, msg: M) -> Result<(), CallError> {
        self.post(Mail::Msg(msg))
    }

    /// Makes the actor fail, to exercise supervision. Test builds only.
    #[cfg(feature = "failure-hook")]
    pub fn fail(&self, reason: &str) -> Result<(), CallError> {
        self.post(Mail::Fail(reason.to_string()))
    }

    fn post(&self, mail: Mail<M>) -> Result<(), CallError> {
        let actor = self.slot.get().ok_or(CallError::Unavailable(self.name))?;
        actor.cast(mail).map_err(|_| CallError::Unavailable(self.name))
    }
}
