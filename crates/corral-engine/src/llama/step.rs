//! The decode loop ([`Loop`]): its state, the turn described in the module docs of `llama`, the
//! batch each step decodes and the sampling that follows it.
//!
//! This is the code that runs once per step for every slot, so it is the code to read first when
//! a step is slow or a token is wrong. How the batch's room is shared between prompts is plain
//! arithmetic ([`prompt_share`], [`prompt_chunks`]), tested below.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::admit::Waiting;
use super::feed::{Feeding, Progress};
use super::job::{draft, Costs, Job};
use super::load::Shape;
use super::media::Projector;
use super::output::Flow;
use super::{to_u32, CellCounts, Command};
use crate::draft::Drafter;
use crate::pace::{Cost, StepCost};
use crate::sample::{self, Picker};

pub(super) struct Loop<'m, 'c, 'd> {
    pub(super) model: &'m LlamaModel,
    pub(super) ctx: &'c mut LlamaContext<'m>,
    pub(super) num_ctx: u32,
    pub(super) num_batch: u32,
    pub(super) slots: Vec<Option<Job>>,
    /// What each idle slot's sequence still holds in the KV cache (the prompt and answer of its
    /// last job), so a prompt sharing a prefix with it skips that prefix.
    pub(super) cached: Vec<Vec<LlamaToken>>,
    /// Which slots have tokens in the batch being built.
    in_batch: Vec<bool>,
    /// Where the next prompt chunk round starts (fairness between long prompts).
    rotate: usize,
    /// Running sequences may be moved to other slots (see [`Loop::close_gaps`]).
    pub(super) movable: bool,
    /// The model's sliding attention window, if it has one.
    pub(super) window: Option<u32>,
    pub(super) cells: Arc<CellCounts>,
    /// The draft model, if one was loaded.
    pub(super) drafter: Option<Drafter<'d>>,
    /// The multimodal projector, if one was loaded.
    pub(super) projector: Option<Projector>,
    /// The image or sound being fed into its job's sequence, if one is.
    feeding: Option<Feeding>,
    /// The decode steps' time, fitted to their size (what a drafted token costs to check).
    step_cost: StepCost,
    /// The batch being decoded holds prompt tokens (its time says nothing about decode steps).
    prompt_in_step: bool,
}

impl<'m, 'c, 'd> Loop<'m, 'c, 'd> {
    /// The loop over `model`'s context `ctx` of `shape`, with every slot idle and empty.
    pub(super) fn new(
        model: &'m LlamaModel,
        ctx: &'c mut LlamaContext<'m>,
        shape: Shape,
        cells: Arc<CellCounts>,
        drafter: Option<Drafter<'d>>,
        projector: Option<Projector>,
    ) -> Self {
        let parallel = shape.parallel;
        Loop {
            model,
            ctx,
            num_ctx: shape.num_ctx,
            num_batch: shape.num_batch,
            slots: (0..parallel).map(|_| None).collect(),
            cached: (0..parallel).map(|_| Vec::new()).collect(),
            in_batch: vec![false; parallel as usize],
            rotate: 0,
            // Recurrent state cannot be copied between sequences the way KV cells can.
            movable: !model.is_recurrent() && !model.is_hybrid(),
            window: sliding_window(model),
            cells,
            drafter,
            projector,
            feeding: None,
            step_cost: StepCost::default(),
            prompt_in_step: false,
        }
    }
}

/// The sliding attention window from the GGUF metadata (`<arch>.attention.sliding_window`).
fn sliding_window(model: &LlamaModel) -> Option<u32> {
    let arch = model.meta_val_str("general.architecture").ok()?;
    model.meta_val_str(&format!("{arch}.attention.sliding_window")).ok()?.parse().ok().filter(|w| *w > 0)
}

impl Loop<'_, '_, '_> {
    pub(super) fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        tokenize(&self.model.vocab(), text, true)
    }

    pub(super) fn run(mut self, commands: Receiver<Command>) {
        let mut waiting = Waiting::new();
        let mut closed = false;
        let mut batch = LlamaBatch::new(self.num_batch as usize, 1);
        loop {
            let busy = self.slots.iter().any(Option::is_some) || !waiting.is_empty();
            if !busy {
                self.publish_cells();
                if closed {
                    return;
                }
                match commands.recv() {
                    Ok(cmd) => self.handle(cmd, &mut waiting),
                    Err(_) => return,
                }
            }
            loop {
                match commands.try_recv() {
                    Ok(cmd) => self.handle(cmd, &mut waiting),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            // Cancelled jobs go first, so their slots (and cached prompts) are free for new ones.
            self.drop_cancelled();
            self.admit(&mut waiting);
            self.close_gaps();
            // A piece of one image or sound per turn, beside the other jobs' batch.
            let media = self.feed_media();
            if self.fill(&mut batch) == 0 {
                if media == Progress::Waiting {
                    self.wait_for_encoder();
                }
                continue;
            }
            let in_batch: Vec<usize> = (0..self.slots.len()).filter(|i| self.in_batch[*i]).collect();
            if in_batch.len() > 1 {
                for &i in &in_batch {
                    if let Some(job) = self.slots[i].as_mut() {
                        job.shared_steps += 1;
                    }
                }
            }
            let started = Instant::now();
            if let Err(e) = self.ctx.decode(&mut batch) {
                let msg = format!("llama.cpp failed to decode a batch: {e}");
                for i in 0..self.slots.len() {
                    if self.slots[i].as_ref().is_some_and(|j| j.logits_at.is_some() || j.fed > 0) {
                        self.fail(i, &msg);
                    }
                }
                continue;
            }
            for i in 0..self.slots.len() {
                self.sample(i);
            }
            // Sampling is timed with the decode: checking a drafted token samples one more row.
            if !self.prompt_in_step {
                self.step_cost.record(batch.n_tokens() as usize, started.elapsed().as_secs_f64());
            }
            // One step's tokens go out together (jobs that ended this step have sent theirs).
            for job in self.slots.iter_mut().flatten() {
                job.events.flush();
            }
            self.publish_cells();
        }
    }

    fn handle(&mut self, cmd: Command, waiting: &mut Waiting) {
        match cmd {
            Command::Tokenize(text, reply) => {
                let _ = reply.send(to_u32(&self.tokenize(&text)));
            }
            Command::Detokenize(tokens, reply) => {
                let n_vocab = self.model.n_vocab() as u32;
                let result = match tokens.iter().find(|t| **t >= n_vocab) {
                    Some(bad) => Err(format!("token {bad} is outside the vocabulary of {n_vocab} tokens")),
                    None if tokens.is_empty() => Ok(String::new()),
                    None => {
                        let tokens: Vec<LlamaToken> = tokens.iter().map(|t| LlamaToken(*t as i32)).collect();
                        Ok(String::from_utf8_lossy(&self.model.vocab().detokenize(&tokens, false, true)).into_owned())
                    }
                };
                let _ = reply.send(result);
            }
            Command::Complete(req, events, cancel) => waiting.push_back((*req, events, cancel)),
            Command::Embed(req, reply) => {
                let _ = reply.send(self.embed(&req));
            }
        }
    }

    /// Jobs generating: each has a token to decode this step.
    fn decoding(&self) -> usize {
        self.slots.iter().flatten().filter(|j| j.next.is_some()).count()
    }

    /// Fills the batch for this step; returns the number of tokens in it.
    ///
    /// Every generating job's pending token goes in; prompt chunks share the rest, starting from a
    /// rotating job. While any job is generating, prompts get only an eighth of `num_batch` per
    /// step: a step lasts as long as its prompt tokens take (512 of them are three seconds for a
    /// 0.5B model on two cores), and every running stream waits that long for its next token.
    /// Prompt throughput on CPU is about the same for 64-token chunks as for 512. Entries are
    /// then written in sequence order: llama.cpp cuts a step into passes at each break in the run
    /// of sequence ids it meets, so a prompt chunk written after every decode token would cost a
    /// pass of its own. Drafted tokens follow their job's pending token; they take room from
    /// the batch before prompt chunks do.
    fn fill(&mut self, batch: &mut LlamaBatch) -> i32 {
        batch.clear();
        let n = self.slots.len();
        let decoding = self.decoding();
        let mut room = (self.num_batch as usize).saturating_sub(decoding);
        let costs = self.draft_costs(decoding);
        for (seq, slot) in self.slots.iter_mut().enumerate() {
            if let Some(job) = slot {
                room -= draft(job, seq, self.drafter.as_mut(), costs, self.num_ctx, room);
            }
        }
        let share = prompt_share(self.num_batch as usize, decoding);
        self.rotate = (self.rotate + 1) % n;
        let left: Vec<usize> = self.slots.iter().map(|s| s.as_ref().map_or(0, Job::text_left)).collect();
        // How many prompt tokens each slot feeds this step.
        let chunk = prompt_chunks(&left, self.rotate, share.min(room));
        self.prompt_in_step = chunk.iter().any(|c| *c > 0);
        for (seq, slot) in self.slots.iter_mut().enumerate() {
            self.in_batch[seq] = false;
            let Some(job) = slot else { continue };
            job.logits_at = None;
            if let Some(token) = job.next.take() {
                let mut at = job.pos(job.n_past);
                batch.add(token, at, &[seq as i32], true).expect("batch has room for one token per slot");
                job.n_past += 1;
                job.logits_at = Some(batch.n_tokens() - 1);
                for &t in job.drafting.iter().flat_map(|d| &d.draft) {
                    at += 1;
                    batch.add(t, at, &[seq as i32], true).expect("drafts fit the room left");
                    job.n_past += 1;
                }
                self.in_batch[seq] = true;
            } else if chunk[seq] > 0 {
                // No medium lies in a chunk of text: its positions follow its indices.
                let from = job.pos(job.fed as i32);
                for (t, at) in (job.fed..job.fed + chunk[seq]).zip(from..) {
                    let last = t == job.prompt.len() - 1;
                    batch.add(job.prompt[t], at, &[seq as i32], last).expect("within the batch budget");
                    if last {
                        job.logits_at = Some(batch.n_tokens() - 1);
                    }
                }
                job.fed += chunk[seq];
                job.n_past = job.fed as i32;
                self.in_batch[seq] = true;
            }
        }
        batch.n_tokens()
    }

    /// Takes this turn's step of feeding an image or sound (see `feed`): the one being fed, or
    /// the next one a prompt has reached, taking turns between jobs. Its pieces are as large as a
    /// prompt chunk would be this turn.
    fn feed_media(&mut self) -> Progress {
        if self.projector.is_none() {
            return Progress::Done;
        }
        let n = self.slots.len();
        // The job being fed may have moved to another slot, or be gone (its encode, if one is
        // running, finishes unheard).
        let fed = self.feeding.as_ref().and_then(|f| {
            self.slots.iter().position(|s| {
                s.as_ref().is_some_and(|j| Arc::ptr_eq(&j.cancel, &f.owner) && j.fed == j.groups[f.group].start)
            })
        });
        let i = match fed {
            Some(i) => i,
            None => {
                self.feeding = None;
                let due = |i: usize| Some((i, self.slots[i].as_ref()?.medium_due()?));
                let Some((i, group)) = (0..n).find_map(|k| due((self.rotate + k) % n)) else { return Progress::Done };
                let job = self.slots[i].as_ref().expect("found above");
                self.feeding = Some(Feeding::new(job.cancel.clone(), group, job.pos(job.n_past)));
                self.rotate = (i + 1) % n;
                i
            }
        };
        let piece = prompt_share(self.num_batch as usize, self.decoding());
        let projector = self.projector.as_mut().expect("checked above");
        let feeding = self.feeding.as_mut().expect("set above");
        let group = &self.slots[i].as_ref().expect("found above").groups[feeding.group];
        let progress = match feeding.advance(projector, self.ctx, group, i as i32, piece, self.num_batch) {
            Ok(p) => p,
            Err(msg) => {
                self.feeding = None;
                self.fail(i, &msg);
                return Progress::Done;
            }
        };
        if progress == Progress::Done {
            let job = self.slots[i].as_mut().expect("found above");
            let end = job.groups[feeding.group].end();
            job.fed = end;
            job.n_past = end as i32;
            self.feeding = None;
        }
        progress
    }

    /// Sleeps until the encoder has something, or a moment has passed (commands and cancellations
    /// are looked at again after it).
    fn wait_for_encoder(&mut self) {
        if let (Some(feeding), Some(projector)) = (self.feeding.as_mut(), self.projector.as_ref()) {
            feeding.wait(projector, Duration::from_millis(20));
        }
    }

    /// What a drafted token costs and a kept one saves at a step with `decoding` plain tokens, once
    /// measured: checking it, plus, for the draft model's, proposing it (lookup's is free).
    fn draft_costs(&self, decoding: usize) -> Costs {
        let measured = self.step_cost.per_token().zip(self.step_cost.step(decoding));
        let cost = |propose: f64| {
            measured.map(|(check, step)| Cost { per_draft: propose + check, per_token: step / decoding.max(1) as f64 })
        };
        Costs { lookup: cost(0.0), model: self.drafter.as_ref().and_then(|d| d.cost_per_proposal()).and_then(cost) }
    }

    /// Chooses slot `i`'s next token from the step's logits, and walks its draft while the
    /// chosen tokens agree with it (see the module docs).
    fn sample(&mut self, i: usize) {
        let Some(job) = self.slots[i].as_mut() else { return };
        let Some(at) = job.logits_at.take() else { return };
        job.first_token.get_or_insert_with(Instant::now);
        let draft = job.drafting.as_mut().map(|d| std::mem::take(&mut d.draft)).unwrap_or_default();
        // Only the pending token surely stays: n_past grows again with each drafted token kept.
        job.n_past -= draft.len() as i32;
        for (j, at) in (at..).enumerate().take(draft.len() + 1) {
            let Some(job) = self.slots[i].as_mut() else { return };
            let forced = job.forced.pop_front();
            let token = match (forced, &mut job.picker) {
                (Some(token), _) => token,
                (None, Picker::Argmax) => LlamaToken(sample::argmax(self.ctx.get_logits_ith(at)) as i32),
                (None, Picker::Chain(s)) => s.sample(self.ctx, at),
            };
            let kept = draft.get(j) == Some(&token) && forced.is_none();
            if self.take(i, token, at, forced.is_some()) == Flow::Ended {
                return;
            }
            let Some(job) = self.slots[i].as_mut() else { return };
            // A token that ended in forced text is decoded again, after it, as a pending token.
            if kept && job.forced.is_empty() {
                job.n_past += 1;
                continue;
            }
            if let Some(d) = job.drafting.as_mut() {
                d.record(draft.len(), j);
            }
            if !draft.is_empty() {
                // The rejected drafts' cells, and nothing else: the sequence holds n_past cells.
                let _ = self.ctx.clear_kv_cache_seq(Some(i as u32), Some(job.pos(job.n_past) as u32), None);
            }
            job.next = Some(token);
            return;
        }
    }
}

/// Tokens of `text`, special tokens parsed; at the start of a prompt (`first`) with the BOS token
/// if the model wants one.
pub(super) fn tokenize(vocab: &llama_cpp_2::vocab::LlamaVocab, text: &str, first: bool) -> Vec<LlamaToken> {
    let mut tokens = vocab.tokenize(text.as_bytes(), first, true);
    // A template that writes the BOS token itself, plus add_special, would give two.
    if first && tokens.len() >= 2 && tokens[0] == vocab.bos() && tokens[1] == vocab.bos() {
        tokens.remove(0);
    }
    tokens
}

/// Prompt tokens one step may take (before drafts and pending tokens are counted) of a batch of
/// `num_batch`, while `decoding` jobs generate: all of it with none, else an eighth (at least 16)
/// so the generating streams are not held up (see [`Loop::fill`]).
fn prompt_share(num_batch: usize, decoding: usize) -> usize {
    if decoding > 0 {
        (num_batch / 8).max(16)
    } else {
        num_batch
    }
}

/// How many of `budget` prompt tokens each slot feeds, given the prompt tokens it has `left`:
/// slots are served in order starting from `first` (which rotates from step to step, so no
/// prompt waits behind another for long), each taking what it needs while the budget lasts.
fn prompt_chunks(left: &[usize], first: usize, mut budget: usize) -> Vec<usize> {
    let n = left.len();
    let mut chunk = vec![0; n];
    for k in 0..n {
        let seq = (first + k) % n;
        chunk[seq] = left[seq].min(budget);
        budget -= chunk[seq];
    }
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_get_an_eighth_of_the_batch_while_anything_generates() {
        assert_eq!(prompt_share(512, 0), 512);
        assert_eq!(prompt_share(512, 1), 64);
        assert_eq!(prompt_share(512, 7), 64);
        // Never less than 16 tokens, or a small batch would crawl through prompts.
        assert_eq!(prompt_share(64, 3), 16);
        assert_eq!(prompt_share(32, 0), 32);
    }

    #[test]
    fn prompt_chunks_are_served_from_the_rotating_slot() {
        // Slot 2 goes first and takes its whole rest; slot 3 gets what is left; the others wait.
        assert_eq!(prompt_chunks(&[100, 0, 30, 50], 2, 64), [0, 0, 30, 34]);
        // From slot 0, the long prompt takes the whole budget.
        assert_eq!(prompt_chunks(&[100, 0, 30, 50], 0, 64), [64, 0, 0, 0]);
        // The order wraps around the slots.
        assert_eq!(prompt_chunks(&[10, 10, 10, 10], 3, 25), [10, 5, 0, 10]);
    }

    #[test]
    fn prompt_chunks_never_exceed_the_budget_or_the_prompts() {
        assert_eq!(prompt_chunks(&[3, 0, 4], 1, 100), [3, 0, 4]);
        assert_eq!(prompt_chunks(&[3, 0, 4], 1, 0), [0, 0, 0]);
        assert_eq!(prompt_chunks(&[], 0, 10), Vec::<usize>::new());
    }
}
