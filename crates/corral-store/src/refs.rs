//! Pins and leases: blobs that an unfinished operation is about to reference.
//!
//! A pin lasts as long as a guard object inside one operation. A lease lasts a fixed time and
//! covers the gap between two requests: a client uploads (or checks with `HEAD`) a blob, then
//! sends the create that references it; a delete of another model in between must not collect it.
//!
//! The lock inside [`Pins`] is the store's one lock. Everything that decides whether a blob may be
//! deleted (delete, prune) and everything that makes a blob referenced (writing a manifest) runs
//! under it, and pinned blobs count as referenced. That is what keeps a concurrent create and
//! delete of two models sharing a blob from deleting it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use corral_types::Digest;

/// What the store lock protects.
#[derive(Debug, Default)]
pub(crate) struct Refs {
    /// Pin counts.
    counts: HashMap<Digest, usize>,
    /// Leases: how many uploads are still waiting for their create, and until when.
    leases: HashMap<Digest, Lease>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    count: usize,
    until: Instant,
}

impl Refs {
    /// Digests that garbage collection must treat as referenced right now.
    pub(crate) fn protected(&mut self) -> impl Iterator<Item = Digest> + '_ {
        let now = Instant::now();
        self.leases.retain(|_, lease| lease.until > now);
        self.counts.keys().chain(self.leases.keys()).copied()
    }
}

/// Pin counts and leases, behind the store lock.
#[derive(Debug, Default)]
pub struct Pins {
    refs: Mutex<Refs>,
}

/// The store lock, held. Dropping it releases the lock.
pub(crate) type Locked<'a> = MutexGuard<'a, Refs>;

impl Pins {
    /// Takes the store lock. A poisoned lock is recovered: the map holds only counts, and a panic
    /// elsewhere cannot leave it half-updated in a way that matters more than a leaked pin.
    pub(crate) fn lock(&self) -> Locked<'_> {
        self.refs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A manifest now references `digests`: each one's lease count goes down by one, and a lease
    /// whose count reaches zero ends (so a later delete can reclaim the space at once).
    pub(crate) fn consume_leases(&self, digests: impl Iterator<Item = Digest>) {
        let mut refs = self.lock();
        for d in digests {
            if let Some(lease) = refs.leases.get_mut(&d) {
                lease.count -= 1;
                if lease.count == 0 {
                    refs.leases.remove(&d);
                }
            }
        }
    }
}

/// Protects `digest` from garbage collection for `ttl`, or until as many creates as there were
/// leases have referenced it. Each call adds one to the count and extends the expiry.
pub(crate) fn add_lease(locked: &mut Locked<'_>, digest: Digest, ttl: Duration) {
    let until = Instant::now() + ttl;
    let lease = locked.leases.entry(digest).or_insert(Lease { count: 0, until });
    lease.count += 1;
    lease.until = lease.until.max(until);
}

/// Releases its pins when dropped.
#[derive(Debug)]
pub struct PinGuard {
    pins: Arc<Pins>,
    digests: Vec<Digest>,
}

impl PinGuard {
    /// Pins `digests` while the caller holds the lock.
    pub(crate) fn new(pins: &Arc<Pins>, locked: &mut Locked<'_>, digests: Vec<Digest>) -> Self {
        for d in &digests {
            *locked.counts.entry(*d).or_insert(0) += 1;
        }
        PinGuard { pins: pins.clone(), digests }
    }

    /// Moves `other`'s pins into this guard.
    pub fn absorb(&mut self, mut other: PinGuard) {
        self.digests.append(&mut other.digests);
    }

    /// An empty guard.
    pub(crate) fn empty(pins: &Arc<Pins>) -> Self {
        PinGuard { pins: pins.clone(), digests: Vec::new() }
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if self.digests.is_empty() {
            return;
        }
        let mut refs = self.pins.lock();
        for d in &self.digests {
            if let Some(n) = refs.counts.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    refs.counts.remove(d);
                }
            }
        }
    }
}
