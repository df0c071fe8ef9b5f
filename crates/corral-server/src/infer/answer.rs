//! An answer being generated, as protocol-neutral events: the runner's tokens go through the
//! output parser and come out as deltas of content, thinking and tool calls, then one end.
//!
//! Every protocol (Ollama's native API, OpenAI's, Anthropic's) encodes these same events; none of
//! them sees runner messages. The answer holds the runner lease until it ends, and dropping it
//! cancels the generation.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use corral_types::api::{Logprob, ToolCall};
use corral_types::runner::{DoneReason, FromRunner, TokenLogprob, Usage};

use super::parse::{OutputParser, Piece};
use crate::metrics::Metrics;
use crate::runner::{Completion, RunnerError};
use crate::sched::Lease;
use crate::ApiError;

/// Settled output of one or more tokens.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    pub content: String,
    pub thinking: String,
    /// Every call has an id (`call_<hex>`, for protocols that tie results to calls) and its
    /// index among the answer's calls.
    pub calls: Vec<ToolCall>,
    pub logprobs: Vec<Logprob>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.content.is_empty() && self.thinking.is_empty() && self.calls.is_empty() && self.logprobs.is_empty()
    }
}

/// How the answer ended.
#[derive(Debug, Clone)]
pub struct Finish {
    pub reason: DoneReason,
    pub usage: Usage,
    /// Prompt and answer tokens (`context` of `/api/generate`).
    pub tokens: Vec<u32>,
}

impl Finish {
    /// The whole prompt in tokens: those processed plus those served from the prompt cache (as
    /// OpenAI's APIs count it; Anthropic's counts the cache reads apart).
    pub fn whole_prompt_tokens(&self) -> u32 {
        self.usage.prompt_tokens + self.usage.cached_tokens
    }
}

#[derive(Debug)]
pub enum AnswerEvent {
    Delta(Delta),
    Done(Finish),
    /// The answer failed (its cause is logged): what to tell the client, with the status it
    /// would have had before the answer started.
    Error(ApiError),
}

/// An answer in progress.
pub struct Answer {
    completion: Completion,
    metrics: Arc<Metrics>,
    /// When the request arrived (time to first token counts from here).
    started: Instant,
    /// When the last token came.
    last_token: Option<Instant>,
    parser: OutputParser,
    lease: Option<Lease>,
    calls: usize,
    queued: VecDeque<AnswerEvent>,
    ended: bool,
    /// The runner was asked to stop (the parser has the whole answer).
    stopping: bool,
}

/// A whole answer.
#[derive(Debug, Default)]
pub struct Collected {
    pub delta: Delta,
    pub finish: Option<Finish>,
}

pub(crate) fn logprob(lp: TokenLogprob) -> Logprob {
    Logprob {
        token: lp.token,
        logprob: lp.logprob,
        bytes: Some(lp.bytes),
        top_logprobs: Some(
            lp.top_logprobs
                .into_iter()
                .map(|t| Logprob { token: t.token, logprob: t.logprob, bytes: Some(t.bytes), top_logprobs: None })
                .collect(),
        ),
    }
}

pub(crate) use crate::error::random_hex;

fn call_id() -> String {
    format!("call_{}", random_hex(6))
}

impl Answer {
    /// `started`: when the request arrived (time to first token counts from there).
    pub fn new(
        completion: Completion,
        parser: OutputParser,
        lease: Lease,
        metrics: Arc<Metrics>,
        started: Instant,
    ) -> Self {
        Answer {
            completion,
            metrics,
            started,
            last_token: None,
            parser,
            lease: Some(lease),
            calls: 0,
            queued: VecDeque::new(),
            ended: false,
            stopping: false,
        }
    }

    fn delta(&mut self, pieces: Vec<Piece>, logprobs: Vec<Logprob>) -> Delta {
        let mut d = Delta { logprobs, ..Default::default() };
        for p in pieces {
            match p {
                Piece::Content(t) => d.content.push_str(&t),
                Piece::Thinking(t) => d.thinking.push_str(&t),
                Piece::Call(call) => {
                    d.calls.push(ToolCall::new(call_id(), self.calls, call));
                    self.calls += 1;
                }
            }
        }
        d
    }

    /// The next event; `None` once the answer has ended.
    pub async fn next(&mut self) -> Option<AnswerEvent> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            match self.completion.next().await {
                Some(FromRunner::Token { text, logprob: lp, .. }) => {
                    let now = Instant::now();
                    match self.last_token {
                        None => self.metrics.time_to_first_token.observe(now - self.started),
                        Some(t) => self.metrics.inter_token_latency.observe(now - t),
                    }
                    self.last_token = Some(now);
                    let pieces = self.parser.push(&text);
                    if self.parser.is_done() && !self.stopping {
                        // A bare JSON call is the whole answer; small models go on repeating it.
                        self.stopping = true;
                        self.completion.stop().await;
                    }
                    let d = self.delta(pieces, lp.map(logprob).into_iter().collect());
                    if !d.is_empty() {
                        return Some(AnswerEvent::Delta(d));
                    }
                }
                Some(FromRunner::Done { reason, usage, tokens, .. }) => {
                    self.metrics.finished(&usage);
                    self.ended = true;
                    self.lease = None;
                    let pieces = self.parser.finish();
                    let d = self.delta(pieces, Vec::new());
                    if !d.is_empty() {
                        self.queued.push_back(AnswerEvent::Delta(d));
                    }
                    self.queued.push_back(AnswerEvent::Done(Finish { reason, usage, tokens }));
                }
                Some(FromRunner::Error { error, kind, .. }) => {
                    self.ended = true;
                    return Some(AnswerEvent::Error(RunnerError::from_reply(kind, error).into()));
                }
                Some(_) => {}
                None => {
                    self.ended = true;
                    return Some(AnswerEvent::Error(RunnerError::Stopped.into()));
                }
            }
        }
    }

    /// Runs the answer to its end.
    pub async fn collect(mut self) -> Result<Collected, ApiError> {
        let mut all = Collected::default();
        while let Some(e) = self.next().await {
            match e {
                AnswerEvent::Delta(d) => {
                    all.delta.content.push_str(&d.content);
                    all.delta.thinking.push_str(&d.thinking);
                    all.delta.calls.extend(d.calls);
                    all.delta.logprobs.extend(d.logprobs);
                }
                AnswerEvent::Done(f) => all.finish = Some(f),
                AnswerEvent::Error(e) => return Err(e),
            }
        }
        Ok(all)
    }
}
