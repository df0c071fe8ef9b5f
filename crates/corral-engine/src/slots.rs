//! Which idle sequence slot a new completion takes.
//!
//! Two things matter. First the prompt cache: the slot whose held tokens share the longest prefix
//! with the prompt skips that prefix. Second, where the busy slots sit: with one KV stream per
//! sequence, llama.cpp decodes a batch in one pass only over a run of consecutive sequence ids
//! (its "sequential" equal split); busy slots 0, 2 and 4 cost three passes per step where 0, 1
//! and 2 cost one. So among equal prefixes the slot that keeps the busy ones in the fewest runs
//! wins, and only then the one holding the fewest tokens (the cheapest cache to lose). Holes
//! left later by jobs that end are closed by moving a running job (`Loop::close_gaps`); choosing
//! well here saves that copy.

/// What is known about one slot when a prompt arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    /// A completion is running in it.
    pub busy: bool,
    /// Tokens its sequence holds in the KV cache.
    pub held: usize,
    /// How many of them are a prefix of the new prompt.
    pub common: usize,
}

/// The idle slot for a new prompt, or `None` if every slot is busy.
pub fn choose(slots: &[SlotState]) -> Option<usize> {
    let busy: Vec<bool> = slots.iter().map(|s| s.busy).collect();
    (0..slots.len()).filter(|&i| !slots[i].busy).max_by_key(|&i| {
        let mut with = busy.clone();
        with[i] = true;
        // Later keys only break ties of earlier ones; the lowest index wins a full tie.
        (slots[i].common, std::cmp::Reverse(runs(&with)), std::cmp::Reverse(slots[i].held), std::cmp::Reverse(i))
    })
}

/// Whether a slot trimmed to its first `reuse` positions still holds everything the next token
/// attends to. `pos_min` is the lowest position the sequence has left (negative: none). A model with
/// a sliding `window` drops cells that fell out of it, so a long answer may have taken the start
/// of the prefix with it; without a window every position from 0 must be there.
pub fn prefix_usable(reuse: usize, pos_min: i32, window: Option<u32>) -> bool {
    if reuse == 0 {
        return true;
    }
    let Ok(pos_min) = usize::try_from(pos_min) else { return false };
    let window = window.map_or(reuse, |w| w as usize);
    pos_min <= reuse.saturating_sub(window)
}

/// Maximal runs of consecutive busy slots.
fn runs(busy: &[bool]) -> usize {
    busy.iter().enumerate().filter(|(i, b)| **b && (*i == 0 || !busy[i - 1])).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(held: usize, common: usize) -> SlotState {
        SlotState { busy: false, held, common }
    }

    const BUSY: SlotState = SlotState { busy: true, held: 100, common: 0 };

    #[test]
    fn the_longest_cached_prefix_wins() {
        assert_eq!(choose(&[idle(10, 0), BUSY, idle(50, 40), idle(50, 30)]), Some(2));
    }

    #[test]
    fn busy_slots_stay_in_one_run() {
        // Slot 3 would split the busy ones into two runs; slot 1 joins them.
        assert_eq!(choose(&[BUSY, idle(5, 0), idle(0, 0), idle(0, 0)]), Some(1));
        assert_eq!(choose(&[idle(0, 0), idle(9, 0), BUSY, idle(9, 0)]), Some(1));
        // Filling a hole merges two runs, even at the cost of a bigger cache.
        assert_eq!(choose(&[BUSY, idle(30, 0), BUSY, idle(0, 0)]), Some(1));
    }

    #[test]
    fn then_the_smallest_cache_is_given_up() {
        assert_eq!(choose(&[idle(30, 0), idle(10, 0), idle(20, 0)]), Some(1));
        // All empty: the lowest slot, so the next one can sit beside it.
        assert_eq!(choose(&[idle(0, 0), idle(0, 0), idle(0, 0)]), Some(0));
    }

    #[test]
    fn a_prefix_is_usable_only_while_its_window_is_whole() {
        // Full attention: position 0 must still be there.
        assert!(prefix_usable(100, 0, None));
        assert!(!prefix_usable(100, 3, None));
        assert!(!prefix_usable(100, -1, None));
        assert!(prefix_usable(0, -1, None));
        // A 1,024-token window at position 3,000 needs the cells from 1,976 on.
        assert!(prefix_usable(3000, 1900, Some(1024)));
        assert!(!prefix_usable(3000, 2100, Some(1024)));
        // Trimmed below what survived: nothing of the window is left.
        assert!(!prefix_usable(1000, -1, Some(1024)));
        assert!(prefix_usable(800, 0, Some(1024)));
    }

    #[test]
    fn no_idle_slot() {
        assert_eq!(choose(&[BUSY, BUSY]), None);
        assert_eq!(choose(&[]), None);
    }
}
