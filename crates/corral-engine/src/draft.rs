//! The draft model of speculative decoding (Modelfile `DRAFT`): a smaller model with the same
//! vocabulary, loaded beside the target with a context of the same shape (one sequence per slot),
//! that proposes the next few tokens greedily. The decode loop checks its proposals with the
//! target; a proposal only decides how many tokens one target step keeps, never which.
//!
//! Each slot's sequence in the draft's KV cache holds a prefix of that slot's prompt and answer
//! (plus the proposals of the last step). Before proposing, the part that differs from what the
//! job has now is dropped and the rest decoded, so the draft sees each token once: the prompt at
//! the first proposal (in chunks of the batch size), then about one new token per step.
//!
//! Proposals are made one job at a time, a decode per drafted token. Batching the draft's steps
//! across jobs is left for later: the draft model is small, and with several streams the target
//! is already batched.
//!
//! The drafter times its proposals (see [`crate::pace`]): the time per proposed token of the
//! proposals that started from a nearly caught-up sequence. Of a proposal that first decodes a
//! long stretch (the prompt, or the answer written while drafting paused or lookup drafted),
//! only the walk after it is counted, per decode: the stretch is paid once, not per token.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use std::time::Instant;

use crate::pace::Rate;
use crate::sample;

pub(crate) struct Drafter<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    /// Tokens each slot's sequence holds in the draft's KV cache.
    held: Vec<Vec<LlamaToken>>,
    batch: LlamaBatch<'static>,
    num_batch: usize,
    /// Token ids the target has: a proposal past them is cut there.
    target_vocab: i32,
    /// Seconds per proposed token.
    cost: Rate,
}

/// The draft and target vocabularies may differ by this many tokens (padding, a few added
/// tokens), as llama.cpp allows; the tokens both have must be the same (checked at create).
pub(crate) const VOCAB_SLACK: i32 = 128;

/// A draft sequence at most this many tokens behind its job is caught up: the kept drafts' last
/// and the target's own next token are what a step that drafted leaves to read. A proposal that
/// first reads more (the prompt, or the answer written while drafting paused) is not timed, and
/// drafting then needs a larger margin ([`crate::pace`]).
const CAUGHT_UP: usize = 4;

impl<'m> Drafter<'m> {
    pub fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        slots: usize,
        num_batch: usize,
        target_vocab: i32,
    ) -> Self {
        Drafter {
            model,
            ctx,
            held: vec![Vec::new(); slots],
            batch: LlamaBatch::new(num_batch, 1),
            num_batch,
            target_vocab,
            cost: Rate::new(0.9),
        }
    }

    /// Seconds the draft model takes to propose one token, once it has proposed some.
    pub fn cost_per_proposal(&self) -> Option<f64> {
        self.cost.get()
    }

    /// Up to `k` tokens the draft model would write after `seen` (the prompt and answer so far of
    /// the job in slot `seq`). Empty if the draft cannot decode.
    pub fn propose(&mut self, seq: usize, seen: &[LlamaToken], k: usize) -> Vec<LlamaToken> {
        let started = Instant::now();
        let common = self.common(seq, seen);
        let (out, walk) = self.propose_untimed(seq, seen, k, common);
        if !out.is_empty() && seen.len() - common <= CAUGHT_UP {
            self.cost.record(started.elapsed().as_secs_f64(), out.len() as f64);
        } else if let Some((secs, decodes)) = walk.filter(|w| w.1 > 0) {
            // After a long catch-up only the walk is timed: a decode per proposed token, which is
            // what a caught-up proposal costs. Without it, a draft model that lookup keeps behind
            // (an answer that copies its prompt) would never be timed, and an unmeasured draft
            // model drafts freely (issue 33).
            self.cost.record(secs, decodes as f64);
        }
        out
    }

    /// Whether slot `seq`'s sequence is at most [`CAUGHT_UP`] tokens behind `seen`.
    pub fn caught_up(&self, seq: usize, seen: &[LlamaToken]) -> bool {
        seen.len() - self.common(seq, seen) <= CAUGHT_UP
    }

    /// How many of `seen`'s first tokens slot `seq`'s sequence holds.
    fn common(&self, seq: usize, seen: &[LlamaToken]) -> usize {
        self.held[seq].iter().zip(seen).take_while(|(a, b)| a == b).count()
    }

    /// [`Drafter::propose`] without the timing; the sequence holds `seen`'s first `common` tokens.
    /// Also returns how long the proposal's walk took (the decodes after the catch-up), and how
    /// many decodes it made.
    fn propose_untimed(
        &mut self,
        seq: usize,
        seen: &[LlamaToken],
        k: usize,
        common: usize,
    ) -> (Vec<LlamaToken>, Option<(f64, usize)>) {
        if k == 0 || seen.is_empty() {
            return (Vec::new(), None);
        }
        let id = seq as i32;
        // The last token is decoded again even if held: its logits give the first proposal.
        let mut common = common.min(seen.len() - 1);
        let held = &mut self.held[seq];
        if !self.ctx.clear_kv_cache_seq(Some(seq as u32), Some(common as u32), None).unwrap_or(false) {
            let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            common = 0;
        }
        held.truncate(common);
        for chunk in seen[common..].chunks(self.num_batch) {
            self.batch.clear();
            let start = held.len();
            for (j, t) in chunk.iter().enumerate() {
                let last = start + j == seen.len() - 1;
                if self.batch.add(*t, (start + j) as i32, &[id], last).is_err() {
                    return (self.forget(seq), None);
                }
            }
            if self.ctx.decode(&mut self.batch).is_err() {
                return (self.forget(seq), None);
            }
            held.extend_from_slice(chunk);
        }
        let model = self.model;
        let vocab = model.vocab();
        let mut out = Vec::with_capacity(k);
        let walk = Instant::now();
        let mut decodes = 0;
        loop {
            let token = LlamaToken(sample::argmax(self.ctx.get_logits_ith(self.batch.n_tokens() - 1)) as i32);
            if token.0 >= self.target_vocab {
                break;
            }
            out.push(token);
            if out.len() == k || vocab.is_eog(token) {
                break;
            }
            self.batch.clear();
            if self.batch.add(token, held.len() as i32, &[id], true).is_err()
                || self.ctx.decode(&mut self.batch).is_err()
            {
                self.forget(seq);
                return (out, None);
            }
            decodes += 1;
            held.push(token);
        }
        (out, Some((walk.elapsed().as_secs_f64(), decodes)))
    }

    /// Follows the target's move of a running sequence from slot `from` to slot `to`.
    pub fn moved(&mut self, from: usize, to: usize) {
        let _ = self.ctx.clear_kv_cache_seq(Some(to as u32), None, None);
        if self.ctx.kv_cache_seq_cp(from as i32, to as i32, None, None).is_ok() {
            self.held[to] = std::mem::take(&mut self.held[from]);
        } else {
            self.held[to].clear();
        }
        self.held[from].clear();
        let _ = self.ctx.clear_kv_cache_seq(Some(from as u32), None, None);
    }

    /// Drops what slot `seq` holds (after a failed decode): the next proposal starts over.
    fn forget(&mut self, seq: usize) -> Vec<LlamaToken> {
        self.held[seq].clear();
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        Vec::new()
    }
}
