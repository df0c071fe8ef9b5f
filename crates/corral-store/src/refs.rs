//! Pins: blobs that an unfinished operation is about to reference.
//!
//! The lock inside [`Pins`] is the store's one lock. Everything that decides whether a blob may be
//! deleted (delete, prune) and everything that makes a blob referenced (writing a manifest) runs
//! under it, and pinned blobs count as referenced. That is what keeps a concurrent create and
//! delete of two models sharing a blob from deleting it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use corral_types::Digest;

/// Pin counts, behind the store lock.
#[derive(Debug, Default)]
pub struct Pins {
    counts: Mutex<HashMap<Digest, usize>>,
}

/// The store lock, held. Dropping it releases the lock.
pub(crate) type Locked<'a> = MutexGuard<'a, HashMap<Digest, usize>>;

impl Pins {
    /// Takes the store lock. A poisoned lock is recovered: the map holds only counts, and a panic
    /// elsewhere cannot leave it half-updated in a way that matters more than a leaked pin.
    pub(crate) fn lock(&self) -> Locked<'_> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
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
            *locked.entry(*d).or_insert(0) += 1;
        }
        PinGuard {
            pins: pins.clone(),
            digests,
        }
    }

    /// Moves `other`'s pins into this guard.
    pub fn absorb(&mut self, mut other: PinGuard) {
        self.digests.append(&mut other.digests);
    }

    /// An empty guard.
    pub(crate) fn empty(pins: &Arc<Pins>) -> Self {
        PinGuard {
            pins: pins.clone(),
            digests: Vec::new(),
        }
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if self.digests.is_empty() {
            return;
        }
        let mut counts = self.pins.lock();
        for d in &self.digests {
            if let Some(n) = counts.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(d);
                }
            }
        }
    }
}
