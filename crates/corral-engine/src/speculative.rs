//! The parts of speculative decoding that are plain arithmetic (issue 15), kept apart from
//! llama.cpp so they can be tested on their own:
//!
//! - [`lookup`]: prompt-lookup drafting. The next tokens are guessed by finding the latest earlier
//!   place where the sequence's last few tokens occurred (in the prompt or the answer so far) and
//!   copying what followed them there. It costs no model and pays when the answer repeats its
//!   input (code edits, quotations, retrieval answers).
//! - [`accept`]: the acceptance rule that keeps sampling exact. A drafted token `x` drawn from
//!   the draft's distribution `q` is kept with probability `min(1, p(x) / q(x))`, `p` being the
//!   target's distribution at that position; when it is not, the token is drawn instead from the
//!   residual `max(0, p - q)`, renormalised. The tokens that come out are distributed exactly as
//!   if the target alone had sampled them. A lookup draft is a certain guess (`q` is all on `x`),
//!   so it is kept with probability `p(x)` and replaced from `p` without `x`.
//! - [`DraftLength`]: how many tokens to draft next, from how many of the last drafts were kept.
//!
//! The decode loop (`llama/job.rs`, `llama/step.rs`) drafts with [`lookup`] and adapts with
//! [`DraftLength`]. It checks drafts by sampling from the model and comparing, which is
//! [`accept`] with a certain guess; the general rule is for drafts drawn from a draft model's
//! distribution.

/// A prompt-lookup proposal: the tokens to draft, and the evidence behind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<T> {
    pub draft: Vec<T>,
    /// How many of the history's last tokens the place the draft was copied from agrees with:
    /// at least the n-gram searched for, counted up to [`MATCHED_CAP`]. A long agreement means
    /// the answer has been copying that place for a while, and is likely to go on.
    pub matched: usize,
}

/// How far back [`lookup`] counts a match's agreement.
pub const MATCHED_CAP: usize = 32;

/// Up to `k` tokens to draft after `history`: the tokens that followed an earlier occurrence of
/// its last `n` tokens, trying `n` from `max_ngram` down to `min_ngram`. Of the occurrences of the
/// longest n-gram found, the one whose agreement with the history reaches furthest back is taken,
/// the latest of equals. `None` when no such n-gram occurred before.
pub fn lookup<T: Copy + PartialEq>(history: &[T], min_ngram: usize, max_ngram: usize, k: usize) -> Option<Found<T>> {
    let len = history.len();
    if k == 0 || min_ngram == 0 {
        return None;
    }
    for n in (min_ngram..=max_ngram.min(len.saturating_sub(1))).rev() {
        let tail = &history[len - n..];
        // A match must end before the tail starts, so at least one token follows it.
        let mut best: Option<(usize, usize)> = None;
        for start in (0..len - n).rev() {
            if &history[start..start + n] != tail {
                continue;
            }
            // How far the agreement goes back before the n-gram.
            let mut matched = n;
            while matched < MATCHED_CAP
                && start + n > matched
                && history[start + n - matched - 1] == history[len - matched - 1]
            {
                matched += 1;
            }
            if best.is_none_or(|(_, m)| matched > m) {
                best = Some((start, matched));
            }
            if matched >= MATCHED_CAP {
                break;
            }
        }
        if let Some((start, matched)) = best {
            let from = start + n;
            return Some(Found { draft: history[from..len.min(from + k)].to_vec(), matched });
        }
    }
    None
}

/// What [`accept`] decided for one drafted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The drafted token stands.
    Kept,
    /// The drafted token is replaced by this one, and the rest of the draft is dropped.
    Replaced(usize),
}

/// Decides on drafted token `x`, given the target's probabilities `p` and the draft's `q` at the
/// same position (`q` is `None` for a lookup draft: all its mass on `x`), and two uniform numbers
/// in `[0, 1)`: `u` for keeping and `v` for drawing a replacement.
pub fn accept(x: usize, p: &[f32], q: Option<&[f32]>, u: f32, v: f32) -> Verdict {
    let qx = q.map_or(1.0, |q| q[x]);
    if qx > 0.0 && u < (p[x] / qx).min(1.0) {
        return Verdict::Kept;
    }
    let residual = |i: usize| match q {
        Some(q) => (p[i] - q[i]).max(0.0),
        None if i == x => 0.0,
        None => p[i],
    };
    let total: f32 = (0..p.len()).map(residual).sum();
    if total <= 0.0 {
        // Only when p and q are the same distribution, where a rejection cannot happen; rounding
        // can get here, and then the target's own draw is right.
        return Verdict::Replaced(draw(p.len(), |i| p[i], p.iter().sum(), v));
    }
    Verdict::Replaced(draw(p.len(), residual, total, v))
}

/// The index where the running sum of `weight` first passes `v * total`.
fn draw(n: usize, weight: impl Fn(usize) -> f32, total: f32, v: f32) -> usize {
    let mut target = v * total;
    let mut last = 0;
    for i in 0..n {
        let w = weight(i);
        if w > 0.0 {
            last = i;
            if target < w {
                return i;
            }
            target -= w;
        }
    }
    last
}

/// How many tokens to draft, adapted to how many are kept: after a draft kept whole, one more
/// (up to `max`); after one that was mostly rejected, fewer (down to `min`). Drafting costs the
/// target a wider batch per step, which is only worth it while the guesses hold.
#[derive(Debug, Clone)]
pub struct DraftLength {
    k: usize,
    min: usize,
    max: usize,
}

impl DraftLength {
    pub fn new(min: usize, max: usize) -> Self {
        let min = min.max(1);
        DraftLength { k: min.max(max.min(4)), min, max: max.max(min) }
    }

    pub fn get(&self) -> usize {
        self.k
    }

    /// Records that `kept` of the `drafted` tokens were kept.
    pub fn record(&mut self, drafted: usize, kept: usize) {
        if drafted == 0 {
            return;
        }
        if kept == drafted {
            self.k = (self.k + 1).min(self.max);
        } else if kept * 2 < drafted {
            self.k = (kept + 1).max(self.min);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator of uniform numbers in [0, 1) (xorshift64*).
    struct Uniform(u64);

    impl Uniform {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    fn drafted<T: Copy + PartialEq>(history: &[T], min: usize, max: usize, k: usize) -> Vec<T> {
        lookup(history, min, max, k).map(|f| f.draft).unwrap_or_default()
    }

    #[test]
    fn lookup_copies_what_followed_the_latest_match() {
        // "a b c d ... a b" → "c d" follows the earlier "a b".
        let h = [1, 2, 3, 4, 9, 1, 2];
        assert_eq!(drafted(&h, 1, 3, 2), vec![3, 4]);
        // The latest of two equal matches wins.
        let h = [1, 2, 3, 1, 2, 5, 6, 1, 2];
        assert_eq!(drafted(&h, 2, 2, 3), vec![5, 6, 1]);
        // A longer n-gram is preferred to a later, shorter one.
        let h = [7, 8, 3, 3, 0, 8, 4, 4, 7, 8];
        assert_eq!(drafted(&h, 1, 2, 2), vec![3, 3]);
        // Nothing repeats: nothing drafted. Too short a history: nothing either.
        assert_eq!(lookup(&[1, 2, 3, 4], 1, 3, 4), None);
        assert_eq!(lookup(&[5], 1, 3, 4), None);
        assert_eq!(lookup::<i32>(&[], 1, 3, 4), None);
        assert_eq!(lookup(&[5, 5], 1, 3, 0), None);
        // The draft stops at the end of the history.
        assert_eq!(drafted(&[5, 5, 5], 1, 1, 8), vec![5]);
    }

    /// Issue 33: the match carries how far back it agrees, and the occurrence that agrees furthest
    /// back is the one copied, even where a later one matches the n-gram.
    #[test]
    fn issue_33_lookup_reports_how_far_back_its_match_agrees() {
        // "4 1 2 → 5" early, "3 1 2 → 6" later; the history ends "… 4 1 2".
        let h = [4, 1, 2, 5, 0, 3, 1, 2, 6, 0, 4, 1, 2];
        assert_eq!(lookup(&h, 2, 2, 1), Some(Found { draft: vec![5], matched: 3 }));
        // Without the longer agreement, the latest occurrence.
        let h = [4, 1, 2, 5, 0, 3, 1, 2, 6, 0, 7, 1, 2];
        assert_eq!(lookup(&h, 2, 2, 1), Some(Found { draft: vec![6], matched: 2 }));
        // A long copy: the history repeats its first 40 tokens; the agreement stops at the cap.
        let text: Vec<i32> = (0..40).collect();
        let mut h = text.clone();
        h.extend(&text[..36]);
        let found = lookup(&h, 2, 4, 3).unwrap();
        assert_eq!(found, Found { draft: vec![36, 37, 38], matched: MATCHED_CAP });
        // The agreement may not reach into the part being matched against (overlapping copies).
        let h = [1, 1, 1, 1];
        assert_eq!(lookup(&h, 2, 2, 1), Some(Found { draft: vec![1], matched: 3 }));
    }

    /// Draws `n` tokens through draft-then-accept and returns their frequencies.
    fn frequencies(p: &[f32], q: Option<&[f32]>, fixed: Option<usize>, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = Uniform(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut counts = vec![0usize; p.len()];
        for _ in 0..n {
            let x = match (q, fixed) {
                (_, Some(x)) => x,
                (Some(q), None) => draw(q.len(), |i| q[i], 1.0, rng.next()),
                (None, None) => unreachable!(),
            };
            let token = match accept(x, p, q, rng.next(), rng.next()) {
                Verdict::Kept => x,
                Verdict::Replaced(t) => t,
            };
            counts[token] += 1;
        }
        counts.iter().map(|c| *c as f64 / n as f64).collect()
    }

    /// The kept-or-replaced tokens follow the target's distribution whatever the draft proposes:
    /// a draft model's distribution far from the target's, and lookup drafts of a likely, an
    /// unlikely and an impossible token. 200,000 draws each; the bound is about six standard
    /// errors of the largest probability.
    #[test]
    fn accepted_tokens_follow_the_targets_distribution() {
        let p = [0.5, 0.25, 0.15, 0.1, 0.0];
        let q = [0.05, 0.1, 0.15, 0.3, 0.4];
        let n = 200_000;
        let bound = 6.0 * (0.25f64 / n as f64).sqrt();
        let cases = [(Some(&q[..]), None), (None, Some(0)), (None, Some(3)), (None, Some(4))];
        for (i, (q, fixed)) in cases.into_iter().enumerate() {
            let f = frequencies(&p, q, fixed, n, i as u64);
            for (token, (got, want)) in f.iter().zip(p).enumerate() {
                assert!((got - f64::from(want)).abs() < bound, "case {i}, token {token}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn a_certain_target_keeps_its_token_and_replaces_others() {
        let p = [0.0, 1.0, 0.0];
        assert_eq!(accept(1, &p, None, 0.999, 0.5), Verdict::Kept);
        assert_eq!(accept(0, &p, None, 0.0, 0.5), Verdict::Replaced(1));
        assert_eq!(accept(2, &p, Some(&[0.0, 0.0, 1.0]), 0.0, 0.99), Verdict::Replaced(1));
    }

    #[test]
    fn the_draft_length_follows_the_acceptance() {
        let mut k = DraftLength::new(1, 8);
        assert_eq!(k.get(), 4);
        k.record(4, 4);
        assert_eq!(k.get(), 5);
        k.record(5, 1);
        assert_eq!(k.get(), 2);
        k.record(2, 0);
        assert_eq!(k.get(), 1);
        for _ in 0..20 {
            k.record(k.get(), k.get());
        }
        assert_eq!(k.get(), 8);
        k.record(0, 0);
        assert_eq!(k.get(), 8);
    }
}
