//! What every actor under the supervisor shares, written once: running as a ractor actor, and
//! the failure hook of test builds.
//!
//! An actor of the tree (KeyManager, each Database worker, Redis, Health) is its own state: a
//! struct that implements [`Supervised`], built from its arguments at every (re)start and handed
//! its messages one at a time. [`AsActor`] runs it as a ractor actor. Its messages travel as
//! [`Mail`], which adds the order to fail (an error from the handler, which the supervisor sees
//! as the actor failing), so no actor carries the failure hook in its own messages.

use std::marker::PhantomData;

use ractor::{Actor, ActorProcessingErr, ActorRef};

/// A message to a supervised actor: one of its own, or the order to fail.
pub enum Mail<M> {
    /// One of the actor's own messages.
    Msg(M),
    /// Fail on purpose, to exercise supervision. Test builds only.
    #[cfg(feature = "failure-hook")]
    Fail(String),
}

/// An actor the supervisor runs. `Self` is its state.
pub trait Supervised: Sized + Send + Sync + 'static {
    /// The messages it handles.
    type Msg: Send + 'static;
    /// Its startup arguments, which the supervisor keeps and reuses on every restart.
    type Args: Send + 'static;

    /// Builds the state from the arguments; an error fails the start (or restart).
    fn start(
        myself: ActorRef<Mail<Self::Msg>>,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self, ActorProcessingErr>> + Send;

    /// Handles one message; an error fails the actor, and the supervisor restarts it.
    fn handle(&mut self, msg: Self::Msg) -> impl Future<Output = Result<(), ActorProcessingErr>> + Send;
}

/// Runs a [`Supervised`] as a ractor actor.
pub struct AsActor<A>(pub(crate) PhantomData<fn() -> A>);

impl<A: Supervised> Actor for AsActor<A> {
    type Msg = Mail<A::Msg>;
    type State = A;
    type Arguments = A::Args;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, args: A::Args) -> Result<A, ActorProcessingErr> {
        A::start(myself, args).await
    }

    async fn handle(&self, _: ActorRef<Self::Msg>, mail: Self::Msg, state: &mut A) -> Result<(), ActorProcessingErr> {
        match mail {
            Mail::Msg(msg) => state.handle(msg).await,
            #[cfg(feature = "failure-hook")]
            Mail::Fail(reason) => Err(reason.into()),
        }
    }
}
