//! The llama.cpp engine on real models: SmolLM2 answers a real question; the tiny random model
//! exercises limits, stops, seeds, grammars, batching and cancellation quickly. One thread each
//! (two OpenMP threads on a shared two-core machine collapse).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use corral_engine::{Engine, Event, LlamaEngine};
use corral_types::runner::{CompletionRequest, Constraint, DoneReason, Sampling, ThinkBudget};

mod common;

use common::{greedy, options, request};

/// The tiny model, written once per test process, loaded with two slots.
fn tiny() -> &'static LlamaEngine {
    static ENGINE: OnceLock<LlamaEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("tiny.gguf");
        std::fs::write(&path, corral_testkit::tiny_llama_with_smollm2_tokenizer(&Default::default())).unwrap();
        LlamaEngine::load(options(&path, 512, 2), |_| {}).unwrap()
    })
}

/// Runs to completion: (text, reason, generated token count).
fn run(engine: &dyn Engine, req: CompletionRequest) -> (String, DoneReason, u32) {
    let out = common::finish(engine, req);
    (out.text, out.reason, out.usage.generated_tokens)
}

#[test]
fn smollm2_knows_the_capital_of_france() {
    let engine = LlamaEngine::load(options(&corral_testkit::smollm2(), 512, 1), |_| {}).unwrap();
    let prompt = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
                  <|im_start|>user\nWhat is the capital of France? Answer in one sentence.<|im_end|>\n<|im_start|>assistant\n";
    let (text, reason, _) = run(&engine, request(prompt, greedy(), Some(40)));
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(reason, DoneReason::Stop, "ends at <|im_end|>: {text:?}");
}

/// A budget larger than the context (512 here) shifts the context instead of ending the answer;
/// without a budget a full context still ends it.
#[test]
fn context_shift_lets_a_generation_outgrow_the_context() {
    let engine = tiny();
    let (text, reason, n) = run(engine, request("Once upon a time", greedy(), Some(700)));
    assert_eq!((reason, n), (DoneReason::Length, 700), "{text:?}");
    let (_, reason, n) = run(engine, request("Once upon a time", greedy(), None));
    assert_eq!(reason, DoneReason::Length);
    assert!(n < 512, "stops at the full context: {n}");
    // The slot that shifted still serves the next request.
    let (_, reason, n) = run(engine, request("Once upon a time", greedy(), Some(12)));
    assert_eq!((reason, n), (DoneReason::Length, 12));
    // `shift: false` ends at the full context even within the budget.
    let (_, reason, n) =
        run(engine, CompletionRequest { shift: false, ..request("Once upon a time", greedy(), Some(700)) });
    assert_eq!(reason, DoneReason::Length);
    assert!(n < 512, "stops at the full context: {n}");
    // Keeping the whole prompt (num_keep -1) shifts too.
    let (_, reason, n) =
        run(engine, CompletionRequest { num_keep: Some(u32::MAX), ..request("Once upon a time", greedy(), Some(700)) });
    assert_eq!((reason, n), (DoneReason::Length, 700));
}

#[test]
fn num_predict_and_determinism() {
    let engine = tiny();
    let (a, reason, n) = run(engine, request("Once upon a time", greedy(), Some(12)));
    assert_eq!((reason, n), (DoneReason::Length, 12));
    assert_eq!(run(engine, request("Once upon a time", greedy(), Some(12))).0, a, "greedy is deterministic");
    let (b, ..) = run(engine, request("The weather today", greedy(), Some(12)));
    assert_ne!(a, b, "output depends on the prompt");

    let seeded = |seed| Sampling { temperature: 1.0, seed: Some(seed), ..Default::default() };
    let s1 = run(engine, request("Once upon a time", seeded(7), Some(16))).0;
    assert_eq!(run(engine, request("Once upon a time", seeded(7), Some(16))).0, s1, "same seed, same output");
    let others: Vec<String> =
        (8..12).map(|s| run(engine, request("Once upon a time", seeded(s), Some(16))).0).collect();
    assert!(others.iter().any(|o| *o != s1), "different seeds differ");
}

#[test]
fn stop_sequences_end_generation() {
    let engine = tiny();
    let (full, ..) = run(engine, request("Once upon a time", greedy(), Some(24)));
    // Pick a stop string from the middle of the unconstrained output.
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() > 8, "{full:?}");
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let mut req = request("Once upon a time", greedy(), Some(24));
    req.stop = vec![stop.clone()];
    let (text, reason, _) = run(engine, req);
    assert_eq!(reason, DoneReason::Stop);
    assert_eq!(text, full[..full.find(&stop).unwrap()], "output is cut before {stop:?}");
}

#[test]
fn grammar_forces_json() {
    let engine = tiny();
    let mut req = request("Give me JSON:", greedy(), Some(60));
    req.constraint = Some(Constraint::Grammar(r#"root ::= "{\"answer\": " [1-9] [0-9]? [0-9]? "}""#.into()));
    let (text, reason, _) = run(engine, req);
    assert_eq!(reason, DoneReason::Stop, "{text:?}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(v["answer"].is_u64(), "{v}");
}

#[test]
fn json_and_schema_constraints_parse() {
    let engine = tiny();
    let mut req = request("Answer in JSON:", greedy(), Some(80));
    req.constraint = Some(Constraint::Json);
    let (text, reason, _) = run(engine, req);
    if reason == DoneReason::Stop {
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    }
    let schema = r#"{"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer","minimum":0,"maximum":120}},"required":["name","age"],"additionalProperties":false}"#;
    let mut req = request("Person:", greedy(), Some(120));
    req.constraint = Some(Constraint::JsonSchema(schema.into()));
    let (text, reason, _) = run(engine, req);
    assert_eq!(reason, DoneReason::Stop, "{text:?}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(v["name"].is_string() && v["age"].is_u64(), "{v}");
    assert!(v["age"].as_u64().unwrap() <= 120);

    let mut bad = request("x", greedy(), Some(5));
    bad.constraint = Some(Constraint::JsonSchema("{not json".into()));
    match engine.complete(bad).unwrap().events.recv().unwrap() {
        Event::Error(e) => assert!(e.to_string().contains("schema"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn logprobs_are_reported() {
    let engine = tiny();
    let mut req = request("Hello", greedy(), Some(3));
    req.logprobs = Some(2);
    let generation = engine.complete(req).unwrap();
    let lps: Vec<_> = generation
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Token { logprob, .. } => logprob,
            _ => None,
        })
        .collect();
    assert_eq!(lps.len(), 3);
    for lp in lps {
        assert!(lp.logprob <= 0.0);
        assert_eq!(lp.top_logprobs.len(), 2);
        // Greedy picks the most likely token.
        assert_eq!(lp.top_logprobs[0].token, lp.token);
    }
}

#[test]
fn two_sequences_decode_together_with_the_same_results() {
    let engine = tiny();
    let alone_a = run(engine, request("Once upon a time", greedy(), Some(20)));
    let alone_b = run(engine, request("In a galaxy far away", greedy(), Some(20)));
    let ga = engine.complete(request("Once upon a time", greedy(), Some(20))).unwrap();
    let gb = engine.complete(request("In a galaxy far away", greedy(), Some(20))).unwrap();
    let collect = |g: corral_engine::Generation| {
        let mut text = String::new();
        for e in g.events.iter() {
            match e {
                Event::Token { text: t, .. } => text.push_str(&t),
                Event::Done { .. } => break,
                Event::Error(e) => panic!("{e}"),
            }
        }
        text
    };
    let (a, b) = std::thread::scope(|s| {
        let ha = s.spawn(|| collect(ga));
        let hb = s.spawn(|| collect(gb));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!(a, alone_a.0);
    assert_eq!(b, alone_b.0);
}

#[test]
fn cancel_stops_a_generation() {
    let engine = tiny();
    let generation = engine.complete(request("Once upon a time", greedy(), None)).unwrap();
    let first = generation.events.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(matches!(first, Event::Token { .. }));
    generation.cancel();
    // The engine drops the job at its next step: the stream ends without a Done.
    let start = Instant::now();
    let rest: Vec<Event> = generation.events.iter().collect();
    assert!(rest.iter().all(|e| matches!(e, Event::Token { .. })), "{rest:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // And the engine is free for the next request.
    assert_eq!(run(engine, request("Hi", greedy(), Some(2))).2, 2);
}

#[test]
fn prompts_that_do_not_fit_are_refused() {
    let engine = tiny();
    let long = "word ".repeat(1000);
    let generation = engine.complete(request(&long, greedy(), Some(2))).unwrap();
    match generation.events.recv().unwrap() {
        Event::Error(e) => {
            assert_eq!(e.kind(), corral_types::runner::ErrorKind::ContextLength);
            assert!(e.to_string().contains("does not fit the context of 512 tokens"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(engine.detokenize(&engine.tokenize("Hello world").unwrap()).unwrap(), "Hello world");
    assert!(engine.detokenize(&[u32::MAX]).is_err());
}

// Issue 14: Anthropic's `budget_tokens`. Past the budget the closing tag is written for the model
// and the answer follows; the thinking before it is exactly what the model wrote.
#[test]
fn issue_14_a_thinking_budget_closes_the_thinking_for_the_model() {
    let engine = tiny();
    let prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>";
    let (thought, _, n) = run(engine, request(prompt, greedy(), Some(5)));
    assert_eq!(n, 5);
    let budget = ThinkBudget { tokens: 5, open: "<think>".into(), close: "</think>".into(), inside: true };
    let req = CompletionRequest { think_budget: Some(budget), ..request(prompt, greedy(), Some(30)) };
    let (text, reason, n) = run(engine, req);
    assert_eq!((reason, n), (DoneReason::Length, 30));
    let rest = text.strip_prefix(&thought).unwrap_or_else(|| panic!("{text:?} starts with {thought:?}"));
    assert!(rest.starts_with("\n</think>\n\n"), "{rest:?}");
    assert!(rest.len() > "\n</think>\n\n".len(), "the answer follows: {rest:?}");
    // Outside a thinking block nothing is counted: the tag never opens, nothing is written.
    let budget = ThinkBudget { tokens: 5, open: "<think>".into(), close: "</think>".into(), inside: false };
    let req = CompletionRequest { think_budget: Some(budget), ..request(prompt, greedy(), Some(30)) };
    assert!(!run(engine, req).0.contains("</think>"));
}
