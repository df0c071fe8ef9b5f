//! The seam between the scheduler and whatever runs models.
//!
//! A [`Backend`] loads a model and hands back a [`Link`]: the model's [`RunnerInfo`] and a
//! connection that speaks the runner protocol (`ToRunner` lines in, `FromRunner` lines out, see
//! `corral_types::runner`). Everything above the link, [`crate::runner::Runner`] and the scheduler,
//! is the same whatever is on the other end:
//!
//! - [`Process`]: `corral runner`, a child process per model, over a Unix socket. What `corral
//!   serve` uses.
//! - [`Scripted`]: an in-process fake that answers the protocol from a script, with no model and
//!   no process, so that the scheduler's policy (eviction, keep-alive, queueing, fit, a runner
//!   dying mid-request, cancellation) is tested through `app(state)` in milliseconds.
//!
//! The seam is the protocol rather than a trait method per operation so that the fake cannot
//! drift from what a real runner does: request routing, cancellation and death detection are the
//! real code in both cases.
//!
//! The host's available memory comes from the backend too, so a test decides what "fits".

mod process;
pub(crate) mod quantize;
mod scripted;

use std::time::Duration;

use corral_types::runner::{LoadOptions, RunnerInfo};
use tokio::io::{AsyncBufRead, AsyncWrite};

pub use process::{Launcher, Process};
pub use scripted::{Script, Scripted, ScriptedLoad};

use crate::runner::RunnerError;

/// A loaded model's connection.
pub struct Link {
    /// What the runner reported once loaded.
    pub info: RunnerInfo,
    /// `FromRunner` lines, after the load handshake.
    pub reader: Box<dyn AsyncBufRead + Send + Unpin>,
    /// Where `ToRunner` lines go.
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
    /// The runner's process id, if it is a process.
    pub pid: Option<u32>,
    /// Sending on it, or dropping it, ends the runner.
    pub stop: tokio::sync::oneshot::Sender<()>,
}

/// A boxed future, for a trait that is used as `dyn`.
pub use futures_util::future::BoxFuture;

/// What runs models for the scheduler.
pub trait Backend: Send + Sync + 'static {
    /// Loads a model with `options`, giving up after `timeout` without progress.
    fn load(&self, options: LoadOptions, timeout: Duration) -> BoxFuture<'_, Result<Link, RunnerError>>;

    /// Bytes of host memory available to new models; `None` when unknown (no limit is applied).
    fn available_memory(&self) -> Option<u64>;
}
