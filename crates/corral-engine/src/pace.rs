//! When drafting pays (issue 15). A drafted token costs time twice: the draft model's step that
//! proposes it (nothing for prompt lookup), and one more row in the target's batch that checks
//! it. It saves a whole target step when it is kept. On a fast machine with a small draft that is
//! a clear gain; on two CPU cores a 0.5B draft decodes at 40 ms a token beside a 1.5B target's
//! 62 ms, a checked row adds about 20 ms, and drafting every step made the stream 6–8 % slower
//! than not drafting at all. So the decode loop measures both sides as it goes and drafts only
//! while the expected saving is larger than the cost by a margin:
//!
//! - [`StepCost`]: the target's step time as a fixed part plus a part per token in the batch,
//!   fitted to the decode steps it has run. The part per token is what checking one drafted token
//!   costs; the step time shared by the batch's plain tokens is what a kept token saves.
//! - [`Rate`]: a mean that forgets, for the draft model's time per proposal (kept by the drafter)
//!   and for the share of a job's drafted tokens that were kept.
//! - [`Payoff`]: one job's decision from those, with occasional trial drafts while acceptance
//!   alone stands in the way (it changes as the answer moves between copied and new text).
//! - [`strength`]: the class of evidence a prompt-lookup proposal carries (how far back its match
//!   agrees with the answer). Each class has its own [`Payoff`] (issue 33): an answer that opens
//!   with new text (a code fence, a new name) misses on short matches, and those misses must not
//!   keep lookup off once the answer starts copying, which shows as long matches.
//!
//! Requests that must draft whatever it costs (the exactness tests) skip the decision.

/// A mean that weighs each new sample 1 and the earlier ones `decay` times less per sample.
#[derive(Debug, Clone)]
pub struct Rate {
    decay: f64,
    num: f64,
    den: f64,
}

impl Rate {
    pub fn new(decay: f64) -> Self {
        Rate { decay, num: 0.0, den: 0.0 }
    }

    /// Adds `num` over `den` (a time over the proposals it made, tokens kept over drafted).
    pub fn record(&mut self, num: f64, den: f64) {
        self.num = self.num * self.decay + num;
        self.den = self.den * self.decay + den;
    }

    pub fn get(&self) -> Option<f64> {
        (self.den > 0.0).then(|| self.num / self.den)
    }
}

/// The target's decode step time in seconds, fitted as `fixed + per_token × tokens` by least
/// squares over recent steps (each earlier step weighing [`StepCost::DECAY`] times less).
///
/// The part per token can only be told from the fixed part while the steps' sizes differ; when
/// they stop differing (every step drafting the same number, or none) the last slope stands and
/// only the fixed part follows the recent steps.
#[derive(Debug, Clone, Default)]
pub struct StepCost {
    w: f64,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
    slope: Option<f64>,
}

impl StepCost {
    const DECAY: f64 = 0.95;
    /// The weighted variance of the step sizes below which the slope is not refitted: about the
    /// spread of steps that mostly differ by less than one token.
    const SPREAD: f64 = 0.2;

    /// Adds a step of `tokens` tokens that took `secs` seconds.
    pub fn record(&mut self, tokens: usize, secs: f64) {
        let (x, d) = (tokens as f64, Self::DECAY);
        self.w = self.w * d + 1.0;
        self.x = self.x * d + x;
        self.y = self.y * d + secs;
        self.xx = self.xx * d + x * x;
        self.xy = self.xy * d + x * secs;
        let (mx, my) = (self.x / self.w, self.y / self.w);
        let var = self.xx / self.w - mx * mx;
        if var > Self::SPREAD {
            self.slope = Some(((self.xy / self.w - mx * my) / var).max(0.0));
        }
    }

    /// What one more token in a step costs, once steps of different sizes were seen.
    pub fn per_token(&self) -> Option<f64> {
        self.slope
    }

    /// The expected time of a step of `tokens` tokens.
    pub fn step(&self, tokens: usize) -> Option<f64> {
        let slope = self.slope?;
        let fixed = (self.y - slope * self.x) / self.w;
        Some(fixed.max(0.0) + slope * tokens as f64)
    }
}

/// What drafting costs and saves at a step, in seconds per token.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// Proposing one token (the draft model's time per proposal, 0 for lookup) and checking it
    /// (one more row in the target's batch).
    pub per_draft: f64,
    /// What the step costs for each plain token in it: the time a kept draft saves.
    pub per_token: f64,
}

impl Cost {
    /// Whether a drafted token could pay at all: even kept every time, it must save more than it
    /// costs by [`Payoff::MARGIN`]. Where it could not, there is no use looking for a proposal.
    pub fn can_pay(&self) -> bool {
        self.per_draft * Payoff::MARGIN < self.per_token
    }
}

/// One job's decision to draft, step by step.
#[derive(Debug, Clone)]
pub struct Payoff {
    /// The share of drafted tokens kept.
    kept: Rate,
    /// Steps to wait before a trial draft, and the steps waited so far.
    wait: u32,
    waited: u32,
}

/// The classes of prompt-lookup evidence [`strength`] sorts proposals into.
pub const STRENGTHS: usize = 4;

/// The evidence class of a lookup proposal whose match agrees with the answer's last `matched`
/// tokens: 2, 3, 4 to 7, 8 or more. A match of two or three tokens turns up in text that copies
/// nothing (common pairs of tokens in code or prose); eight or more agreeing tokens mostly mean
/// that the answer is copying that place.
/// The share of a lookup draft's tokens each evidence class is expected to keep before any of
/// its drafts were checked. Measured with every lookup proposal drafted (`CORRAL_DRAFT_ALWAYS`),
/// Qwen2.5-Coder 1.5B on `bench/speculative.py`'s eight prompts: 2-token matches kept 51 %, 4 to
/// 7 tokens 79 %, 8 or more 88 %. The shortest class is set lower: in answers that copy nothing,
/// it makes nearly all the proposals.
pub const LOOKUP_PRIORS: [f64; STRENGTHS] = [0.3, 0.5, 0.75, 0.85];

pub fn strength(matched: usize) -> usize {
    match matched {
        0..=2 => 0,
        3 => 1,
        4..=7 => 2,
        _ => 3,
    }
}

impl Payoff {
    /// The first trial comes this many steps after drafting stopped paying, each later one twice
    /// as late (up to [`Payoff::LONGEST_WAIT`]) while it keeps not paying.
    const FIRST_WAIT: u32 = 16;
    const LONGEST_WAIT: u32 = 256;
    /// A drafted token must be expected to save this much more than it costs. The estimates are
    /// noisy from step to step (measured with Qwen2.5-Coder 0.5B drafting for 1.5B on two cores,
    /// they put a drafted token's cost at 0.95-1.05 of its saving from one answer to the next,
    /// while every answer that drafted was 3-16 % slower than plain).
    const MARGIN: f64 = 1.1;
    /// The margin when the draft model must first catch up on a long stretch, the prompt or the
    /// answer written while it paused, which the per-token estimates leave out: a 400-token prompt
    /// is 1.8 s for that 0.5B draft, a quarter of a 128-token answer. Only a clear gain pays that.
    const CATCH_UP_MARGIN: f64 = 1.5;
    /// Trials are made only while a draft kept this often would pay. Where a checked row costs
    /// nearly as much as a plain token (many answers in each step of a CPU), only drafts that are
    /// almost always kept pay, and the trials alone cost more than they could find: with prompt
    /// lookup on for eight answers of SmolLM2, they made the steps 2-5 % slower. One answer of
    /// Qwen2.5-Coder 1.5B on two cores is the other side: a checked row is 15 ms against 27 ms a
    /// token, so a draft pays from 62 % kept, and copied text is kept 80-90 % of the time; at
    /// the former 50 % no trial was ever made there (issue 33).
    const TRIAL_SHARE: f64 = 0.8;

    pub fn new() -> Self {
        // Acceptance moves fast: an edit's answer copies the input for a stretch, then writes
        // something new. A few drafted steps are enough to follow it.
        Payoff { kept: Rate::new(0.8), wait: Self::FIRST_WAIT, waited: 0 }
    }

    /// A payoff that starts out expecting `share` of its drafts kept, as much as two drafted
    /// tokens would tell: the first drafts soon outweigh it.
    pub fn expecting(share: f64) -> Self {
        let mut p = Payoff::new();
        p.kept.record(2.0 * share, 2.0);
        p
    }

    /// Records that `kept` of `drafted` tokens were kept.
    pub fn record(&mut self, drafted: usize, kept: usize) {
        if drafted > 0 {
            self.kept.record(kept as f64, drafted as f64);
        }
    }

    /// How many tokens the job may draft at this step (`usize::MAX`: as many as it likes), given
    /// the step's cost, if known, and whether the draft model must first `catch_up` on a long
    /// stretch of the job's text. When even a draft that is always kept would not pay, nothing is
    /// drafted. Otherwise drafting goes on while a drafted token saves more than it costs (by
    /// [`Payoff::MARGIN`], or [`Payoff::CATCH_UP_MARGIN`]), `per_draft × margin < kept share ×
    /// per_token`; a job that has not drafted yet tries one token; when only its kept share is
    /// too low, one token is tried now and then (where a draft kept [`Payoff::TRIAL_SHARE`] of the
    /// time would pay), so an answer that starts repeating its input is noticed.
    pub fn allowance(&mut self, cost: Option<Cost>, catch_up: bool) -> usize {
        let Some(cost) = cost else { return usize::MAX };
        let margin = if catch_up { Self::CATCH_UP_MARGIN } else { Self::MARGIN };
        let per_draft = cost.per_draft * margin;
        if per_draft >= cost.per_token {
            return 0;
        }
        // A job's first draft is one token: where drafting turns out not to pay, each new answer
        // tried four at once (eight answers of a CPU step: 3 % more rows in 128 tokens).
        let Some(kept) = self.kept.get() else { return 1 };
        if per_draft < kept * cost.per_token {
            self.wait = Self::FIRST_WAIT;
            self.waited = 0;
            return usize::MAX;
        }
        if per_draft >= Self::TRIAL_SHARE * cost.per_token {
            return 0;
        }
        self.waited += 1;
        if self.waited < self.wait {
            return 0;
        }
        self.waited = 0;
        self.wait = (self.wait * 2).min(Self::LONGEST_WAIT);
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_evidence_falls_into_four_classes() {
        let classes: Vec<usize> = (2..=10).map(strength).collect();
        assert_eq!(classes, [0, 1, 2, 2, 2, 2, 3, 3, 3]);
        assert_eq!(strength(crate::speculative::MATCHED_CAP), STRENGTHS - 1);
    }

    /// A prior weighs two tokens: the first decision follows it, and a missed draft of four
    /// overrules it.
    #[test]
    fn an_expected_share_is_two_tokens_worth() {
        let cost = Some(Cost { per_draft: 0.020, per_token: 0.060 });
        let mut p = Payoff::expecting(0.5);
        assert_eq!(p.allowance(cost, false), usize::MAX, "0.5 × 60 ms > 22 ms");
        p.record(4, 0);
        assert_eq!(p.allowance(cost, false), 0, "a share of 0.14: 9 ms < 22 ms");
        assert_eq!(Payoff::expecting(0.3).allowance(cost, false), 0, "0.3 × 60 ms < 22 ms");
    }

    /// Issue 33, measured with Qwen2.5-Coder 1.5B on two cores: a checked row costs 15 ms, a token
    /// 27 ms. Drafts kept 90 % of the time pay, so a source that missed is tried again now and
    /// then (at the former trial share, one half, it never was).
    #[test]
    fn issue_33_trials_are_made_where_a_mostly_kept_draft_pays() {
        let cost = Some(Cost { per_draft: 0.015, per_token: 0.027 });
        let mut p = Payoff::expecting(LOOKUP_PRIORS[0]);
        p.record(4, 0);
        let trials = (0..100).filter(|_| p.allowance(cost, false) == 1).count();
        assert_eq!(trials, 2, "after 16 chances, then 32 more");
        // The strong classes draft at once; the weak ones wait for a trial.
        let first: Vec<usize> = LOOKUP_PRIORS.iter().map(|s| Payoff::expecting(*s).allowance(cost, false)).collect();
        assert_eq!(first, [0, 0, usize::MAX, usize::MAX]);
    }

    #[test]
    fn the_step_cost_is_fitted_from_steps_of_different_sizes() {
        let mut cost = StepCost::default();
        // One size only: no slope yet.
        for _ in 0..5 {
            cost.record(1, 0.062);
        }
        assert_eq!(cost.per_token(), None);
        assert_eq!(cost.step(1), None);
        // 40 ms fixed plus 20 ms a token, steps of 1 to 9 tokens.
        for n in (1..=9).cycle().take(60) {
            cost.record(n, 0.040 + 0.020 * n as f64);
        }
        let close = |a: f64, b: f64| (a - b).abs() < 1e-3;
        // The early 62 ms one-token steps sit 2 ms off the line and still weigh a little.
        assert!(close(cost.per_token().unwrap(), 0.020), "{:?}", cost.per_token());
        assert!(close(cost.step(1).unwrap(), 0.060), "{:?}", cost.step(1));
        // Then every step has the same size: the slope stands once the sizes stop differing.
        for _ in 0..200 {
            cost.record(9, 0.220);
        }
        assert!(close(cost.per_token().unwrap(), 0.020), "{:?}", cost.per_token());
        assert!(close(cost.step(1).unwrap(), 0.060), "{:?}", cost.step(1));
        // And they get slower: the estimate for that size follows.
        for _ in 0..200 {
            cost.record(9, 0.300);
        }
        assert!(close(cost.step(9).unwrap(), 0.300), "{:?}", cost.step(9));
    }

    #[test]
    fn a_rate_forgets_old_samples() {
        let mut r = Rate::new(0.5);
        assert_eq!(r.get(), None);
        r.record(0.0, 8.0);
        assert_eq!(r.get(), Some(0.0));
        for _ in 0..20 {
            r.record(8.0, 8.0);
        }
        assert!(r.get().unwrap() > 0.999);
    }

    /// The draft model and check costs measured on two cores (Qwen2.5-Coder 0.5B drafting for
    /// 1.5B): drafting never pays, whatever is kept, and no trial is made.
    #[test]
    fn drafting_stops_when_even_a_kept_draft_costs_more_than_it_saves() {
        let dear = Cost { per_draft: 0.038 + 0.020, per_token: 0.060 };
        assert!(!dear.can_pay());
        let cost = Some(dear);
        assert!(Cost { per_draft: 0.020, per_token: 0.060 }.can_pay());
        let mut p = Payoff::new();
        assert_eq!(p.allowance(None, false), usize::MAX, "nothing measured yet");
        assert_eq!(p.allowance(cost, false), 0, "not even tried");
        p.record(8, 8);
        assert!((0..1000).all(|_| p.allowance(cost, false) == 0));
        // Alone on a GPU-sized step, the same draft pays.
        assert_eq!(p.allowance(Some(Cost { per_draft: 0.061, per_token: 0.300 }), true), usize::MAX);
        assert_eq!(p.allowance(None, false), usize::MAX);
    }

    /// Prompt lookup costs only the check: it drafts while enough is kept, tries one token at
    /// growing intervals while too little is, and drafts fully again once trials are kept.
    #[test]
    fn drafting_follows_the_kept_share() {
        let cost = Some(Cost { per_draft: 0.020, per_token: 0.060 });
        let mut p = Payoff::new();
        p.record(8, 4);
        assert_eq!(p.allowance(cost, false), usize::MAX, "half kept: 20 ms < 30 ms");
        for _ in 0..6 {
            p.record(8, 0);
        }
        let mut trials = Vec::new();
        for step in 0..1000 {
            if p.allowance(cost, false) == 1 {
                trials.push(step);
                p.record(1, 0);
            }
        }
        let gaps: Vec<_> = trials.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(trials[0], Payoff::FIRST_WAIT as usize - 1);
        assert_eq!(&gaps[..4], &[32, 64, 128, 256]);
        assert!(gaps[4..].iter().all(|g| *g == 256), "{gaps:?}");
        // Trials kept: the share climbs back and drafting resumes.
        for _ in 0..10 {
            p.record(1, 1);
        }
        assert_eq!(p.allowance(cost, false), usize::MAX);
        // A draft model far behind the job must first catch up: 32 ms against about 45 ms kept
        // pays when it is caught up (× 1.1 = 35 ms), not before (× 1.5 = 48 ms).
        let cost = Cost { per_draft: 0.032, per_token: 0.050 };
        p.record(10, 9);
        assert_eq!(p.allowance(Some(cost), false), usize::MAX);
        assert_eq!(p.allowance(Some(cost), true), 0);
    }

    /// Eight answers in a step on a CPU: a checked row costs 3.9 ms against 4.5 ms a plain token.
    /// Nearly every draft kept would pay; a job that kept a third makes no trials.
    #[test]
    fn no_trials_where_only_a_draft_nearly_always_kept_would_pay() {
        let cost = Some(Cost { per_draft: 0.0039, per_token: 0.0045 });
        let mut p = Payoff::new();
        assert_eq!(p.allowance(cost, false), 1, "not drafted yet: one token");
        p.record(3, 1);
        assert!((0..1000).all(|_| p.allowance(cost, false) == 0));
        for _ in 0..20 {
            p.record(4, 4);
        }
        assert_eq!(p.allowance(cost, false), usize::MAX, "all kept: 4.3 ms < 4.5 ms");
    }
}
