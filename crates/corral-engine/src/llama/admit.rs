//! Slots coming and going: waiting completions admitted into free slots (with their cached
//! prefix reused), cancelled ones dropped, running ones moved so the busy slots stay together,
//! and the KV cell counts published for metrics.
//!
//! These run once per turn before the batch is built; they decide where each job's cells live.
//! The choices themselves are pure and tested in [`crate::slots`]; this is where they meet the
//! context.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use corral_types::runner::{CompletionRequest, DoneReason};
use llama_cpp_2::token::LlamaToken;

use super::job::Job;
use super::media;
use super::output::last;
use super::step::Loop;
use crate::sample;
use crate::slots::{self, SlotState};
use crate::{EngineError, Event, Sink};

/// Completions waiting for a slot: the request, where its events go, and its owner's wish.
pub(super) type Waiting = VecDeque<(CompletionRequest, Box<dyn Sink>, Arc<AtomicU8>)>;

impl Loop<'_, '_, '_> {
    /// Moves running jobs so the busy slots form one run of sequence ids.
    ///
    /// Each sequence has its own KV stream and llama.cpp decodes a batch in one pass per run of
    /// consecutive sequence ids, so when jobs in the middle finish, every later step pays for an
    /// extra pass until the rest end. Copying a job's stream into the hole costs one copy of
    /// `num_ctx` cells (tens of MB, a few milliseconds), about what one extra pass costs: it pays
    /// for itself at the next step. The copy is queued by llama.cpp and done at the start of the
    /// next decode, before anything is written. A job whose context was shifted is not moved: a
    /// pending shift would not travel with its cells.
    pub(super) fn close_gaps(&mut self) {
        if !self.movable {
            return;
        }
        loop {
            let busy: Vec<usize> = (0..self.slots.len()).filter(|i| self.slots[*i].is_some()).collect();
            let (Some(&lo), Some(&hi)) = (busy.first(), busy.last()) else { return };
            let Some(hole) = (lo..hi).find(|i| self.slots[*i].is_none()) else { return };
            if self.slots[hi].as_ref().is_some_and(|j| j.shifted) {
                return;
            }
            let (from, to) = (hi as i32, hole as i32);
            if self.ctx.kv_cache_seq_cp(from, to, None, None).is_err() {
                return;
            }
            let _ = self.ctx.clear_kv_cache_seq(Some(hi as u32), None, None);
            self.slots[hole] = self.slots[hi].take();
            if let Some(d) = self.drafter.as_mut() {
                d.moved(hi, hole);
            }
            self.cached[hole].clear();
            self.cached[hi].clear();
            self.cells.moves.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts the KV cells held by running jobs (what they have decoded) and by idle slots.
    pub(super) fn publish_cells(&self) {
        let used: i64 = self.slots.iter().flatten().map(|j| i64::from(j.n_past.max(0))).sum();
        let cached: usize =
            (0..self.slots.len()).filter(|i| self.slots[*i].is_none()).map(|i| self.cached[i].len()).sum();
        self.cells.used.store(used as u64, Ordering::Relaxed);
        self.cells.cached.store(cached as u64, Ordering::Relaxed);
    }

    /// The idle slot for `prompt` (see [`crate::slots`]) and how many prompt tokens it already has.
    fn pick_slot(&self, prompt: &[LlamaToken]) -> Option<(usize, usize)> {
        let states: Vec<SlotState> = (0..self.slots.len())
            .map(|i| SlotState {
                busy: self.slots[i].is_some(),
                held: self.cached[i].len(),
                common: self.cached[i].iter().zip(prompt).take_while(|(a, b)| a == b).count(),
            })
            .collect();
        slots::choose(&states).map(|i| (i, states[i].common))
    }

    /// Moves waiting completions into free slots.
    ///
    /// While the projector is encoding, prompts with media stay waiting (tokenizing them would use
    /// its context); the others go ahead of them.
    pub(super) fn admit(&mut self, waiting: &mut Waiting) {
        let encoding = self.projector.as_ref().is_some_and(media::Projector::busy);
        let mut held = Waiting::new();
        while self.slots.iter().any(Option::is_none) {
            let Some((req, mut events, cancel)) = waiting.pop_front() else { break };
            if cancel.load(Ordering::Relaxed) != crate::wish::RUN {
                continue;
            }
            if encoding && !req.media.is_empty() {
                held.push_back((req, events, cancel));
                continue;
            }
            let (prompt, groups) = if req.media.is_empty() {
                (self.tokenize(&req.prompt), Vec::new())
            } else {
                match media::tokenize(self.model, self.projector.as_ref(), &req.prompt, &req.media) {
                    Ok(t) => t,
                    Err(e) => {
                        last(&mut *events, Event::Error(e));
                        continue;
                    }
                }
            };
            let error = if prompt.is_empty() {
                Some(EngineError::Request("the prompt is empty".to_string()))
            } else if prompt.len() >= self.num_ctx as usize {
                Some(EngineError::ContextLength(format!(
                    "the prompt is {} tokens, which does not fit the context of {} tokens",
                    prompt.len(),
                    self.num_ctx
                )))
            } else {
                None
            };
            if let Some(e) = error {
                last(&mut *events, Event::Error(e));
                continue;
            }
            let grammar = match req.constraint.as_ref().map(crate::grammar::to_gbnf).transpose() {
                Ok(g) => g,
                Err(e) => {
                    last(&mut *events, Event::Error(EngineError::Request(e)));
                    continue;
                }
            };
            let picker = match sample::picker(self.model, &req.sampling, grammar.as_deref(), self.num_ctx) {
                Ok(p) => p,
                Err(e) => {
                    last(&mut *events, Event::Error(EngineError::Request(e)));
                    continue;
                }
            };
            let (free, mut reuse) = self.pick_slot(&prompt).expect("a slot is free");
            // The last prompt token is always decoded again: its logits give the first answer token.
            // An image is reused whole or not at all.
            reuse = media::whole_prefix(reuse.min(prompt.len() - 1), &media::spans(&groups));
            // The cached prefix holds the same media at the same places, so the same positions.
            let at = media::position(reuse, &groups) as u32;
            let trimmed = self.ctx.clear_kv_cache_seq(Some(free as u32), Some(at), None).unwrap_or(false);
            // A memory that cannot drop a suffix (recurrent models), or a sliding window that lost
            // part of the prefix: start over.
            if !trimmed || !slots::prefix_usable(at as usize, self.ctx.kv_cache_seq_pos_min(free as i32), self.window) {
                reuse = 0;
                let _ = self.ctx.clear_kv_cache_seq(Some(free as u32), None, None);
            }
            self.cached[free].clear();
            // Rejected drafts are removed from the cache, which recurrent state cannot do.
            // Drafts (looked up in the prompt, or from a draft model that cannot see the images)
            // are for text-only prompts.
            let may_draft = self.movable && groups.is_empty();
            let mut job = Job::new(req, events, cancel, prompt, reuse, picker, may_draft);
            job.groups = groups;
            self.slots[free] = Some(job);
        }
        while let Some(w) = held.pop_back() {
            waiting.push_front(w);
        }
    }

    pub(super) fn drop_cancelled(&mut self) {
        for i in 0..self.slots.len() {
            match self.slots[i].as_ref().map(|j| j.cancel.load(Ordering::Relaxed)) {
                Some(crate::wish::CANCEL) => self.free(i),
                Some(crate::wish::STOP) => self.finish(i, DoneReason::Stop),
                _ => {}
            }
        }
    }
}
