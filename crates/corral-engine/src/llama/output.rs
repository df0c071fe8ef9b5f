//! What happens to a token once it is chosen, and how a job ends.
//!
//! [`Loop::take`] sends the token's text (through the stop-sequence buffer, with its logprobs),
//! follows the thinking budget, and decides whether the job goes on: end of generation, a stop
//! sequence, the token budget or a full context (which may shift instead). A job that ends leaves
//! its slot by [`Loop::finish`], [`Loop::fail`] or [`Loop::free`], and [`Loop::keep`] records what
//! its cells still hold for the next prompt. The arithmetic of a context shift and of what stays
//! cached is pure ([`shift_span`], [`held`]) and tested below.

use corral_types::runner::{DoneReason, TokenLogprob, Usage};
use llama_cpp_2::token::LlamaToken;

use super::job::Job;
use super::step::Loop;
use super::think::ThinkStep;
use super::to_u32;
use crate::sample;
use crate::{EngineError, Event, Sink};

/// What became of a job after one of its tokens.
#[derive(PartialEq, Eq)]
pub(super) enum Flow {
    Going,
    Ended,
}

/// Hands a job's last event to its sink and sends it on.
pub(super) fn last(sink: &mut dyn Sink, event: Event) {
    sink.event(event);
    sink.flush();
}

impl Loop<'_, '_, '_> {
    /// Sends `token`, chosen for slot `i` from the logits at batch index `at` (or `forced`), and
    /// ends the job if it is the last one.
    pub(super) fn take(&mut self, i: usize, token: LlamaToken, at: i32, forced: bool) -> Flow {
        let Some(job) = self.slots[i].as_mut() else { return Flow::Ended };
        let vocab = self.model.vocab();
        let piece = |t: LlamaToken| vocab.token_to_piece(t, true, None);
        let logprob = job.logprobs.filter(|_| !forced).map(|top| {
            let (lp, alternatives) = sample::logprobs(self.ctx.get_logits_ith(at), token.0 as usize, top as usize);
            let bytes = piece(token);
            TokenLogprob {
                token: String::from_utf8_lossy(&bytes).into_owned(),
                logprob: lp,
                bytes,
                top_logprobs: alternatives
                    .into_iter()
                    .map(|(t, lp)| sample::top_logprob(piece(LlamaToken(t as i32)), lp))
                    .collect(),
            }
        });
        if vocab.is_eog(token) && !forced {
            self.finish(i, DoneReason::Stop);
            return Flow::Ended;
        }
        job.output.push(token);
        if let Some(d) = job.drafting.as_mut() {
            d.seen.push(token);
        }
        let bytes = piece(token);
        if !forced {
            if let Some(thinking) = job.think.as_mut() {
                match thinking.after(&String::from_utf8_lossy(&bytes)) {
                    ThinkStep::Going => {}
                    ThinkStep::Closed => job.think = None,
                    ThinkStep::Spent => {
                        // The closing tag follows this token, as if the model had written it.
                        job.forced = vocab.tokenize(thinking.closing().as_bytes(), false, true).into();
                        job.think = None;
                    }
                }
            }
        }
        let (text, stopped) = job.stop.push(&bytes);
        if (!text.is_empty() || logprob.is_some()) && !job.events.event(Event::Token { text, logprob }) {
            self.free(i);
            return Flow::Ended;
        }
        if stopped {
            self.finish(i, DoneReason::Stop);
            return Flow::Ended;
        }
        let budget_spent = job.num_predict.is_some_and(|n| job.output.len() as u32 >= n);
        let context_full = job.n_past + 1 >= self.num_ctx as i32;
        // Without a budget, a full context ends the answer; with one, the context shifts.
        let shift = context_full && job.num_predict.is_some() && job.may_shift;
        if budget_spent || (context_full && !(shift && self.shift(i))) {
            self.finish(i, DoneReason::Length);
            return Flow::Ended;
        }
        Flow::Going
    }

    /// Context shift: drops the older half of slot `i`'s tokens after the first `num_keep` and
    /// moves the rest down, as Ollama does, so a generation can outgrow the context. False if the
    /// model's memory cannot do it.
    fn shift(&mut self, i: usize) -> bool {
        let Some(job) = self.slots[i].as_mut() else { return false };
        // Moving cells by one delta would not keep a picture's grid of positions (M-RoPE).
        if job.groups.iter().any(|g| g.packed()) {
            return false;
        }
        let Some((keep, discard)) = shift_span(job.num_keep, job.prompt.len(), job.n_past) else { return false };
        let Some((keep, discard)) = super::media::whole_shift(keep, discard, &job.spans(), job.n_past) else {
            return false;
        };
        let seq = i as u32;
        let dropped =
            self.ctx.clear_kv_cache_seq(Some(seq), Some(keep as u32), Some((keep + discard) as u32)).unwrap_or(false);
        if !dropped || self.ctx.kv_cache_seq_add(i as i32, Some((keep + discard) as u32), None, -discard).is_err() {
            return false;
        }
        job.n_past -= discard;
        job.shifted = true;
        true
    }

    pub(super) fn finish(&mut self, i: usize, reason: DoneReason) {
        let Some(mut job) = self.slots[i].take() else { return };
        let rest = job.stop.flush();
        if !rest.is_empty() {
            job.events.event(Event::Token { text: rest, logprob: None });
        }
        let first = job.first_token.unwrap_or(job.started);
        let usage = Usage {
            prompt_tokens: (job.prompt.len() - job.reused) as u32,
            prompt_ns: (first - job.started).as_nanos() as u64,
            generated_tokens: job.output.len() as u32,
            generation_ns: first.elapsed().as_nanos() as u64,
            cached_tokens: job.reused as u32,
            shared_steps: job.shared_steps,
            draft_tokens: job.drafting.as_ref().map_or(0, |d| d.proposed),
            draft_accepted: job.drafting.as_ref().map_or(0, |d| d.accepted),
        };
        let mut tokens = to_u32(&job.prompt);
        tokens.extend(to_u32(&job.output));
        last(&mut *job.events, Event::Done { reason, usage, tokens });
        self.keep(i, job);
    }

    /// Remembers what slot `i`'s sequence holds in the KV cache after `job`: the prompt fed so far
    /// and the answer tokens decoded (the last sampled one never was).
    fn keep(&mut self, i: usize, job: Job) {
        if job.drafting.is_some() {
            // Drafted cells past what the job kept (it ended in the middle of its draft).
            let _ = self.ctx.clear_kv_cache_seq(Some(i as u32), Some(job.pos(job.n_past.max(0)) as u32), None);
        }
        if job.shifted {
            // Its cells no longer hold a prefix of anything a prompt could start with.
            self.cached[i].clear();
            let _ = self.ctx.clear_kv_cache_seq(Some(i as u32), None, None);
            return;
        }
        self.cached[i] = held(job.prompt, job.fed, job.output, job.n_past);
    }

    pub(super) fn fail(&mut self, i: usize, msg: &str) {
        if let Some(mut job) = self.slots[i].take() {
            last(&mut *job.events, Event::Error(EngineError::Internal(msg.to_string())));
        }
        // After a failed decode the sequence's cells are not trusted.
        self.cached[i].clear();
        let _ = self.ctx.clear_kv_cache_seq(Some(i as u32), None, None);
    }

    /// Ends slot `i`'s job without an answer (cancelled, or its receiver is gone); what it
    /// decoded stays cached.
    pub(super) fn free(&mut self, i: usize) {
        if let Some(job) = self.slots[i].take() {
            self.keep(i, job);
        }
    }
}

/// The span a context shift drops from a sequence holding `n_past` cells, of a `prompt_len`-token
/// prompt whose first `num_keep` tokens stay: `(keep, discard)`, the first `keep` positions kept
/// (at most half the cells) and the `discard` after them dropped (half of the rest). `None` when
/// there is nothing to drop.
fn shift_span(num_keep: u32, prompt_len: usize, n_past: i32) -> Option<(i32, i32)> {
    let keep = (num_keep.min(prompt_len as u32) as i32).min(n_past / 2);
    let discard = (n_past - keep) / 2;
    (discard > 0).then_some((keep, discard))
}

/// What a sequence's cells hold after its job: the prompt tokens it fed, the answer after them
/// once the whole prompt was in, and no more than the `n_past` positions it decoded.
fn held(mut prompt: Vec<LlamaToken>, fed: usize, output: Vec<LlamaToken>, n_past: i32) -> Vec<LlamaToken> {
    prompt.truncate(fed);
    if fed == prompt.len() {
        prompt.extend(output);
    }
    prompt.truncate(n_past.max(0) as usize);
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ids: std::ops::Range<i32>) -> Vec<LlamaToken> {
        ids.map(LlamaToken).collect()
    }

    #[test]
    fn a_shift_keeps_num_keep_and_drops_half_the_rest() {
        // Ollama's default: 4 kept, then half of the other 96 cells dropped.
        assert_eq!(shift_span(4, 10, 100), Some((4, 48)));
        // num_keep is bounded by the prompt…
        assert_eq!(shift_span(50, 10, 100), Some((10, 45)));
        // …and by half the cells, so a shift always frees some.
        assert_eq!(shift_span(u32::MAX, 80, 100), Some((50, 25)));
    }

    #[test]
    fn a_shift_needs_something_to_drop() {
        assert_eq!(shift_span(4, 10, 1), None);
        assert_eq!(shift_span(0, 10, 2), Some((0, 1)));
        assert_eq!(shift_span(4, 10, 0), None);
    }

    #[test]
    fn a_job_stopped_during_its_prompt_caches_what_it_fed() {
        assert_eq!(held(tokens(0..10), 4, Vec::new(), 4), tokens(0..4));
        assert_eq!(held(tokens(0..10), 0, Vec::new(), 0), Vec::new());
    }

    #[test]
    fn a_finished_job_caches_its_prompt_and_the_answer_it_decoded() {
        // Three answer tokens were sampled; the last was never decoded, so 12 cells hold 0..12.
        assert_eq!(held(tokens(0..10), 10, tokens(10..13), 12), tokens(0..12));
        // A job that ended inside its draft kept fewer cells than it sampled tokens.
        assert_eq!(held(tokens(0..10), 10, tokens(10..15), 11), tokens(0..11));
        // A negative position (nothing decoded) holds nothing.
        assert_eq!(held(tokens(0..3), 3, tokens(3..4), -1), Vec::new());
    }
}
