//! What the engine's integration tests share: load options for one thread, requests with
//! everything off but what a test sets, a generation run to its end, and (`compat`) the checks of
//! models in the layouts Ollama published them in.

// Each test file uses the part it needs.
#![allow(dead_code)]

pub mod compat;

use std::path::Path;

use corral_engine::{Engine, Event};
use corral_types::runner::{CompletionRequest, DoneReason, LoadOptions, Sampling, TokenLogprob, Usage};

/// Loads `path` with `parallel` slots of `num_ctx` tokens on one thread (two OpenMP threads on a
/// shared two-core machine collapse), on the CPU.
pub fn options(path: &Path, num_ctx: u32, parallel: u32) -> LoadOptions {
    LoadOptions {
        model_path: path.to_str().unwrap().to_string(),
        num_ctx,
        parallel,
        num_batch: 64,
        num_thread: 1,
        num_gpu: 0,
        ..Default::default()
    }
}

pub fn greedy() -> Sampling {
    Sampling { temperature: 0.0, ..Default::default() }
}

/// A request for `prompt` with no stops, constraint, logprobs, budget or drafting.
pub fn request(prompt: &str, sampling: Sampling, num_predict: Option<u32>) -> CompletionRequest {
    CompletionRequest {
        prompt: prompt.into(),
        sampling,
        num_predict,
        num_keep: None,
        shift: true,
        stop: vec![],
        constraint: None,
        logprobs: None,
        think_budget: None,
        speculation: None,
        media: Vec::new(),
    }
}

/// What a finished generation gave.
#[derive(Debug)]
pub struct Output {
    pub text: String,
    pub reason: DoneReason,
    pub usage: Usage,
    /// The prompt's tokens and the answer's.
    pub tokens: Vec<u32>,
    pub logprobs: Vec<TokenLogprob>,
}

/// Runs `req` to its end; panics on an error or a stream that stops without `Done`.
pub fn finish(engine: &dyn Engine, req: CompletionRequest) -> Output {
    let generation = engine.complete(req).unwrap();
    let mut text = String::new();
    let mut logprobs = Vec::new();
    for event in generation.events.iter() {
        match event {
            Event::Token { text: t, logprob } => {
                text.push_str(&t);
                logprobs.extend(logprob);
            }
            Event::Done { reason, usage, tokens } => return Output { text, reason, usage, tokens, logprobs },
            Event::Error(e) => panic!("generation failed: {e}"),
        }
    }
    panic!("stream ended without done");
}

/// Asserts that two generations chose the same tokens and gave each step's top alternatives the
/// same log-probabilities, within `bound`.
pub fn assert_same_answers(a: &Output, b: &Output, bound: f32) {
    assert_eq!(a.text, b.text);
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.logprobs.len(), b.logprobs.len());
    for (step, (x, y)) in a.logprobs.iter().zip(&b.logprobs).enumerate() {
        assert_eq!(x.token, y.token, "step {step}");
        assert!((x.logprob - y.logprob).abs() <= bound, "step {step}: {} vs {}", x.logprob, y.logprob);
        assert_eq!(x.top_logprobs.len(), y.top_logprobs.len(), "step {step}");
        for (p, q) in x.top_logprobs.iter().zip(&y.top_logprobs) {
            assert_eq!(p.token, q.token, "step {step}");
            assert!(
                (p.logprob - q.logprob).abs() <= bound,
                "step {step}, {:?}: {} vs {}",
                p.token,
                p.logprob,
                q.logprob
            );
        }
    }
}
