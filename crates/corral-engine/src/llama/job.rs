//! A completion while it holds a slot ([`Job`]), and its speculative decoding state
//! ([`Drafting`]), with [`draft`]: how many tokens a job drafts at a step and which.
//!
//! These are the per-request facts the loop consults every step. Drafting's limits (the context,
//! the token budget, the batch's room, whether it pays) are decided here, away from llama.cpp, so
//! that prompt-lookup drafting can be tested without a model.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::Instant;

use corral_types::runner::{CompletionRequest, Speculation};
use llama_cpp_2::token::LlamaToken;

use super::media::Group;
use super::think::Thinking;
use crate::draft::Drafter;
use crate::pace::{self, Cost, Payoff, LOOKUP_PRIORS, STRENGTHS};
use crate::sample::Picker;
use crate::speculative::{self, DraftLength};
use crate::stop::StopBuffer;
use crate::Sink;

/// A completion occupying a slot.
pub(super) struct Job {
    pub(super) events: Box<dyn Sink>,
    pub(super) cancel: Arc<AtomicU8>,
    pub(super) prompt: Vec<LlamaToken>,
    /// Prompt tokens already decoded (or found in the slot's cache).
    pub(super) fed: usize,
    /// Prompt tokens found in the slot's cache, not decoded again.
    pub(super) reused: usize,
    /// Decode steps that included this job together with another one.
    pub(super) shared_steps: u32,
    /// Tokens kept at the start when the context is shifted.
    pub(super) num_keep: u32,
    /// The context may be shifted at all.
    pub(super) may_shift: bool,
    /// The context was shifted: the KV cells no longer hold a prefix of prompt + output.
    pub(super) shifted: bool,
    /// KV cells the job's sequence holds: the index of the next token in prompt + output (its
    /// position is [`Job::pos`] of it).
    pub(super) n_past: i32,
    /// Sampled token waiting to be decoded.
    pub(super) next: Option<LlamaToken>,
    pub(super) output: Vec<LlamaToken>,
    pub(super) picker: Picker,
    pub(super) stop: StopBuffer,
    pub(super) num_predict: Option<u32>,
    pub(super) logprobs: Option<u32>,
    pub(super) started: Instant,
    pub(super) first_token: Option<Instant>,
    /// Batch index of this job's logits in the current step.
    pub(super) logits_at: Option<i32>,
    /// The thinking bound, while it may still apply.
    pub(super) think: Option<Thinking>,
    /// Tokens written for the model (a closing tag), taken instead of sampling, one per step.
    pub(super) forced: VecDeque<LlamaToken>,
    /// Speculative decoding, when the request asked for it.
    pub(super) drafting: Option<Drafting>,
    /// The prompt's images and sounds, in order.
    pub(super) groups: Vec<Group>,
}

impl Job {
    /// The job for `req`, whose tokenized `prompt` has its first `reuse` tokens in the slot's
    /// cache already. `may_draft` is false where rejected drafts could not be removed from the
    /// cache (recurrent state).
    pub(super) fn new(
        req: CompletionRequest,
        events: Box<dyn Sink>,
        cancel: Arc<AtomicU8>,
        prompt: Vec<LlamaToken>,
        reuse: usize,
        picker: Picker,
        may_draft: bool,
    ) -> Job {
        let drafting = req.speculation.filter(|_| may_draft).and_then(|s| Drafting::new(s, &prompt));
        Job {
            events,
            cancel,
            prompt,
            fed: reuse,
            reused: reuse,
            shared_steps: 0,
            num_keep: req.num_keep.unwrap_or(4),
            may_shift: req.shift,
            shifted: false,
            n_past: reuse as i32,
            next: None,
            output: Vec::new(),
            picker,
            stop: StopBuffer::new(req.stop),
            num_predict: req.num_predict,
            logprobs: req.logprobs,
            started: Instant::now(),
            first_token: None,
            logits_at: None,
            think: req.think_budget.map(Thinking::new),
            forced: VecDeque::new(),
            drafting,
            groups: Vec::new(),
        }
    }

    /// Prompt tokens the loop can batch now: the text up to the next medium.
    pub(super) fn text_left(&self) -> usize {
        let stop = self.groups.iter().map(|g| g.start).find(|&s| s >= self.fed).unwrap_or(self.prompt.len());
        stop.max(self.fed) - self.fed
    }

    /// The index among its groups of the medium the prompt reaches next, if its turn has come
    /// (the text before it is in).
    pub(super) fn medium_due(&self) -> Option<usize> {
        self.groups.iter().position(|g| g.start == self.fed).filter(|_| self.next.is_none())
    }

    /// The position of the token at `index` (see `media::position`).
    pub(super) fn pos(&self, index: i32) -> i32 {
        super::media::position(index as usize, &self.groups)
    }

    /// Where the prompt's media lie, as `(start, len)` of the token list.
    pub(super) fn spans(&self) -> Vec<(usize, usize)> {
        super::media::spans(&self.groups)
    }
}

/// A job's speculative decoding state.
pub(super) struct Drafting {
    /// The prompt and the answer so far, where drafts are looked up.
    pub(super) seen: Vec<LlamaToken>,
    /// Tokens drafted in the batch being decoded, after the job's pending token.
    pub(super) draft: Vec<LlamaToken>,
    pub(super) proposed: u32,
    pub(super) accepted: u32,
    /// Where the draft being decoded came from.
    pub(super) source: Source,
    /// How lookup proposals of each evidence class ([`pace::strength`]) and the draft model's fare,
    /// each apart (issue 33): a draft model that does not pay must not stop prompt lookup, which
    /// costs nothing to propose, and misses on weak matches must not stop drafting from strong
    /// ones.
    pub(super) lookup: [Pace; STRENGTHS],
    pub(super) model: Pace,
    /// Draft whether it pays or not.
    always: bool,
}

/// One source's record: whether its drafts pay, and how long they are.
pub(super) struct Pace {
    pub(super) payoff: Payoff,
    pub(super) length: DraftLength,
}

/// The longest draft, whatever the request asks.
const MAX_DRAFT: usize = 16;

/// Shortest and longest n-gram prompt lookup matches: a match of one token drafts at nearly
/// every step and is wrong most of the time.
const LOOKUP_NGRAM: (usize, usize) = (2, 4);

impl Drafting {
    fn new(spec: Speculation, prompt: &[LlamaToken]) -> Option<Self> {
        let max = spec.max_tokens.min(MAX_DRAFT as u32) as usize;
        let pace = |payoff| Pace { payoff, length: DraftLength::new(1, max) };
        (max > 0).then(|| Drafting {
            seen: prompt.to_vec(),
            draft: Vec::new(),
            proposed: 0,
            accepted: 0,
            source: Source::Model,
            lookup: LOOKUP_PRIORS.map(|share| pace(Payoff::expecting(share))),
            model: pace(Payoff::new()),
            always: spec.always,
        })
    }
}

/// Where a draft comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Prompt lookup, with its match's evidence class: what followed the last tokens where they
    /// occurred before.
    Lookup(usize),
    /// The draft model.
    Model,
}

impl Drafting {
    fn pace(&mut self, source: Source) -> &mut Pace {
        match source {
            Source::Lookup(class) => &mut self.lookup[class],
            Source::Model => &mut self.model,
        }
    }

    /// Records that `kept` of the `drafted` tokens of the last draft were kept, for its source.
    pub(super) fn record(&mut self, drafted: usize, kept: usize) {
        let pace = self.pace(self.source);
        pace.length.record(drafted, kept);
        pace.payoff.record(drafted, kept);
        self.proposed += drafted as u32;
        self.accepted += kept as u32;
    }
}

/// What a drafted token costs, by source, once measured (`None`: not yet).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Costs {
    pub(super) lookup: Option<Cost>,
    pub(super) model: Option<Cost>,
}

/// Drafts up to `room` tokens for the next step of `job` (in slot `seq`), if it is generating and
/// drafts: as many as the source's draft length allows, the context has positions for, and its
/// token budget can still use. Prompt lookup proposes first, where it finds a match whose evidence
/// class pays at `costs.lookup`; else the draft model (`drafter`), where it pays at
/// `costs.model`. Returns how many.
pub(super) fn draft(
    job: &mut Job,
    seq: usize,
    mut drafter: Option<&mut Drafter>,
    costs: Costs,
    num_ctx: u32,
    room: usize,
) -> usize {
    let Some(d) = job.drafting.as_mut() else { return 0 };
    d.draft.clear();
    if job.next.is_none() || !job.forced.is_empty() {
        return 0;
    }
    // After a context shift the answer no longer fits behind the prompt in the draft model's
    // context; lookup works on the tokens and goes on.
    if job.shifted {
        drafter = None;
    }
    // The pending token goes at n_past and the drafts after it; one position stays free for the
    // token chosen after the last draft.
    let positions = (num_ctx as i64 - i64::from(job.n_past) - 3).max(0) as usize;
    let budget = job.num_predict.map_or(usize::MAX, |n| (n as usize).saturating_sub(job.output.len() + 1));
    let most = room.min(positions).min(budget);
    if most == 0 {
        return 0;
    }
    let always = d.always;
    let allowed = |pace: &mut Pace, cost, catch_up| {
        let allowed = if always { usize::MAX } else { pace.payoff.allowance(cost, catch_up) };
        most.min(pace.length.get()).min(allowed)
    };
    // The search reads the whole history, at every step of every job: not where no draft could
    // pay (many answers in each step of a CPU).
    let search = always || costs.lookup.is_none_or(|c| c.can_pay());
    let found = search.then(|| speculative::lookup(&d.seen, LOOKUP_NGRAM.0, LOOKUP_NGRAM.1, most.min(MAX_DRAFT)));
    if let Some(found) = found.flatten() {
        let source = Source::Lookup(pace::strength(found.matched));
        let k = allowed(d.pace(source), costs.lookup, false);
        if k > 0 {
            d.draft = found.draft;
            d.draft.truncate(k);
            d.source = source;
            return d.draft.len();
        }
    }
    let Some(drafter) = drafter else { return 0 };
    let catch_up = !drafter.caught_up(seq, &d.seen);
    let k = allowed(&mut d.model, costs.model, catch_up);
    if k == 0 {
        return 0;
    }
    d.draft = drafter.propose(seq, &d.seen, k);
    d.source = Source::Model;
    d.draft.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_types::runner::Sampling;

    fn tokens(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().map(|&t| LlamaToken(t)).collect()
    }

    fn request(speculation: Option<Speculation>) -> CompletionRequest {
        CompletionRequest {
            prompt: String::new(),
            sampling: Sampling::default(),
            num_predict: None,
            num_keep: None,
            shift: true,
            stop: Vec::new(),
            constraint: None,
            logprobs: None,
            think_budget: None,
            speculation,
            media: Vec::new(),
        }
    }

    /// A job that has read `prompt` and has `next` pending at the position after it, drafting
    /// up to `max_tokens` per step even where it would not pay (`always`).
    fn generating(prompt: &[i32], next: i32, max_tokens: u32, always: bool) -> Job {
        let (tx, _) = std::sync::mpsc::channel();
        let spec = Speculation { max_tokens, always };
        let prompt = tokens(prompt);
        let mut job = Job::new(request(Some(spec)), Box::new(tx), Arc::default(), prompt, 0, Picker::Argmax, true);
        job.fed = job.prompt.len();
        job.n_past = job.prompt.len() as i32;
        job.next = Some(LlamaToken(next));
        job.drafting.as_mut().unwrap().seen.push(LlamaToken(next));
        job
    }

    /// `… 1 2 3 4 … 1 2`: prompt lookup drafts `3 4 …`.
    const REPEATING: [i32; 7] = [9, 1, 2, 3, 4, 5, 1];

    fn drafted(job: &Job) -> Vec<LlamaToken> {
        job.drafting.as_ref().unwrap().draft.clone()
    }

    #[test]
    fn a_new_job_starts_after_its_cached_prefix() {
        let (tx, _) = std::sync::mpsc::channel();
        let mut req = request(None);
        req.num_keep = Some(7);
        let job = Job::new(req, Box::new(tx), Arc::default(), tokens(&[1, 2, 3]), 2, Picker::Argmax, true);
        assert_eq!((job.fed, job.reused, job.n_past, job.num_keep), (2, 2, 2, 7));
        assert!(job.drafting.is_none() && job.think.is_none() && job.next.is_none());
        // Ollama's default number of tokens kept by a context shift.
        let (tx, _) = std::sync::mpsc::channel();
        let job = Job::new(request(None), Box::new(tx), Arc::default(), tokens(&[1]), 0, Picker::Argmax, true);
        assert_eq!(job.num_keep, 4);
    }

    #[test]
    fn drafting_is_set_up_only_where_it_can_be_undone() {
        let (tx, _) = std::sync::mpsc::channel();
        let spec = Some(Speculation { max_tokens: 4, always: false });
        let job = Job::new(request(spec), Box::new(tx), Arc::default(), tokens(&[1, 2]), 0, Picker::Argmax, false);
        assert!(job.drafting.is_none());
        assert!(Drafting::new(Speculation { max_tokens: 0, always: true }, &[]).is_none());
        let d = Drafting::new(Speculation { max_tokens: 4, always: true }, &tokens(&[5, 6])).unwrap();
        assert_eq!(d.seen, tokens(&[5, 6]));
    }

    #[test]
    fn drafts_are_never_longer_than_sixteen() {
        let mut d = Drafting::new(Speculation { max_tokens: 100, always: true }, &[]).unwrap();
        for _ in 0..40 {
            let k = d.model.length.get();
            d.model.length.record(k, k);
        }
        assert_eq!(d.model.length.get(), 16);
    }

    #[test]
    fn prompt_lookup_drafts_what_followed_the_last_tokens() {
        let mut job = generating(&REPEATING, 2, 4, true);
        assert_eq!(draft(&mut job, 0, None, Costs::default(), 100, 100), 4);
        assert_eq!(drafted(&job), tokens(&[3, 4, 5, 1]));
        // The batch's room bounds it.
        assert_eq!(draft(&mut job, 0, None, Costs::default(), 100, 2), 2);
        assert_eq!(drafted(&job), tokens(&[3, 4]));
        // After a shift, prompt lookup still works on the tokens (only a draft model cannot).
        job.shifted = true;
        assert_eq!(draft(&mut job, 0, None, Costs::default(), 100, 100), 4);
    }

    #[test]
    fn nothing_is_drafted_without_a_pending_token() {
        let mut job = generating(&REPEATING, 2, 4, true);
        assert_eq!(draft(&mut job, 0, None, Costs::default(), 100, 100), 4);
        job.next = None;
        assert_eq!(draft(&mut job, 0, None, Costs::default(), 100, 100), 0);
        // The last step's draft does not linger.
        assert!(drafted(&job).is_empty());
        // Nor while forced tokens (a closing tag) are being written.
        let mut job = generating(&REPEATING, 2, 4, true);
        job.forced.push_back(LlamaToken(0));
        assert_eq!(draft(&mut job, 0, None, Costs::default(), 100, 100), 0);
        // Nor for a job that does not draft at all.
        let mut job = generating(&REPEATING, 2, 4, true);
        job.drafting = None;
        assert_eq!(draft(&mut job, 0, None, Costs::default(), 100, 100), 0);
    }

    #[test]
    fn drafts_stop_short_of_the_context_and_the_token_budget() {
        let mut job = generating(&REPEATING, 2, 4, true);
        let n_past = job.n_past as u32;
        // The pending token, the drafts and one more must fit: n_past + 3 positions leave none.
        assert_eq!(draft(&mut job, 0, None, Costs::default(), n_past + 3, 100), 0);
        assert_eq!(draft(&mut job, 0, None, Costs::default(), n_past + 5, 100), 2);
        // With 3 tokens left to generate, the pending one and 2 drafts use them all.
        job.num_predict = Some(job.output.len() as u32 + 3);
        assert_eq!(draft(&mut job, 0, None, Costs::default(), 100, 100), 2);
        job.num_predict = Some(job.output.len() as u32 + 1);
        assert_eq!(draft(&mut job, 0, None, Costs::default(), 100, 100), 0);
    }

    #[test]
    fn drafting_stops_where_it_cannot_pay() {
        // Each drafted token would cost more than a plain token saves.
        let dear = Some(Cost { per_draft: 2.0, per_token: 1.0 });
        let mut job = generating(&REPEATING, 2, 4, false);
        assert_eq!(draft(&mut job, 0, None, Costs { lookup: dear, model: dear }, 100, 100), 0);
        // `always` drafts regardless.
        let mut job = generating(&REPEATING, 2, 4, true);
        assert_eq!(draft(&mut job, 0, None, Costs { lookup: dear, model: dear }, 100, 100), 4);
        // With nothing measured yet, a job drafts.
        let mut job = generating(&REPEATING, 2, 4, false);
        assert_eq!(draft(&mut job, 0, None, Costs::default(), 100, 100), 4);
    }

    #[test]
    fn issue_33_lookup_is_judged_apart_from_the_draft_model() {
        let dear = Some(Cost { per_draft: 2.0, per_token: 1.0 });
        let cheap = Some(Cost { per_draft: 0.1, per_token: 1.0 });
        let costs = Costs { lookup: cheap, model: dear };
        // Lookup drafts where the draft model's tokens would cost more than they save (a short
        // match is first expected to keep 30 %: 0.3 > 0.11).
        let mut job = generating(&REPEATING, 2, 4, false);
        assert_eq!(draft(&mut job, 0, None, costs, 100, 100), 4);
        assert_eq!(job.drafting.as_ref().unwrap().source, Source::Lookup(0));
        // Draft-model drafts that are never kept leave lookup's record alone: it goes on drafting.
        let d = job.drafting.as_mut().unwrap();
        d.source = Source::Model;
        for _ in 0..20 {
            d.record(4, 0);
        }
        assert!(d.lookup[0].payoff.allowance(cheap, false) > 0);
        assert_eq!(d.model.payoff.allowance(dear, false), 0);
        assert!(draft(&mut job, 0, None, costs, 100, 100) > 0);
        // Lookup's own misses do count against it.
        let d = job.drafting.as_mut().unwrap();
        d.source = Source::Lookup(0);
        for _ in 0..20 {
            d.record(1, 0);
        }
        let costs = Costs { lookup: Some(Cost { per_draft: 0.6, per_token: 1.0 }), model: dear };
        assert_eq!(draft(&mut job, 0, None, costs, 100, 100), 0);
    }

    /// Costs measured with Qwen2.5-Coder 1.5B on two cores: a checked row 20 ms, a token 60 ms.
    const CPU: Costs = Costs { lookup: Some(Cost { per_draft: 0.020, per_token: 0.060 }), model: None };

    /// Issue 33, the rename: the answer opens with text the prompt lacks (a code fence, the new
    /// name), so its first lookup drafts come from short matches and miss. Once it copies a long
    /// stretch, the long match drafts at once, several tokens, however often the short ones
    /// missed.
    #[test]
    fn issue_33_misses_on_short_matches_do_not_hold_back_a_long_copy() {
        let prompt: Vec<i32> = (100..130).collect();
        let mut job = generating(&prompt, 1, 8, false);
        let d = job.drafting.as_mut().unwrap();
        d.source = Source::Lookup(0);
        for _ in 0..10 {
            d.record(1, 0);
        }
        // "… 128 129 | 1": no match at all now.
        assert_eq!(draft(&mut job, 0, None, CPU, 1000, 100), 0);
        // The answer has copied 110..119 of the prompt: ten agreeing tokens.
        let d = job.drafting.as_mut().unwrap();
        d.seen.extend((110..120).map(LlamaToken));
        assert_eq!(draft(&mut job, 0, None, CPU, 1000, 100), 4);
        assert_eq!(drafted(&job), tokens(&[120, 121, 122, 123]));
        assert_eq!(job.drafting.as_ref().unwrap().source, Source::Lookup(STRENGTHS - 1));
        // While a short match stays paced off.
        let d = job.drafting.as_mut().unwrap();
        d.seen.extend([7, 110, 111].map(LlamaToken));
        assert_eq!(draft(&mut job, 0, None, CPU, 1000, 100), 0);
    }

    /// The worst case of an answer that copies nothing: a short match at every step, every draft
    /// missed. Nothing at first (a 2-token match is expected to keep 30 %: 18 ms < 22 ms), then
    /// trials 16, 32, 64 and 128 matches apart: four drafted tokens in 256 steps, each costing a
    /// third of a step (0.5 %).
    #[test]
    fn issue_33_misses_at_every_step_cost_a_few_trials() {
        let mut job = generating(&REPEATING, 2, 8, false);
        let mut total = 0;
        for _ in 0..256 {
            let n = draft(&mut job, 0, None, CPU, 1000, 100);
            if n > 0 {
                job.drafting.as_mut().unwrap().record(n, 0);
            }
            total += n;
        }
        assert_eq!(total, 4);
    }
}
