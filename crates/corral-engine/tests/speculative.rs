//! Speculative decoding (issue 15) on real models, with prompt lookup and with a draft model: the
//! output with drafting is token for token the output without it (greedy, and sampled with a
//! seed: the sampler draws once per token either way), sampled tokens follow the model's
//! distribution (counted on a random model of eight letters), drafts are kept where the answer
//! repeats its prompt or the draft is good, and drafting sequences share steps with plain ones,
//! with stops, grammars, logprobs and budgets. One thread.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{finish as run, greedy, Output};
use corral_engine::LlamaEngine;
use corral_types::runner::{CompletionRequest, Constraint, DoneReason, Sampling, Speculation};

fn load(path: &Path, parallel: u32) -> LlamaEngine {
    load_with_draft(path, None, parallel).unwrap()
}

fn load_with_draft(
    path: &Path,
    draft: Option<&Path>,
    parallel: u32,
) -> Result<LlamaEngine, corral_engine::EngineError> {
    let mut opts = common::options(path, 1024, parallel);
    opts.draft_path = draft.map(|d| d.to_str().unwrap().to_string());
    LlamaEngine::load(opts, |_| {})
}

/// A random model with SmolLM2's vocabulary: a draft for SmolLM2 that is nearly always wrong.
fn random_smollm2_vocabulary() -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("random.gguf");
    std::fs::write(&path, corral_testkit::tiny_llama_with_smollm2_tokenizer(&Default::default())).unwrap();
    path
}

/// The random model with itself as its draft model (its drafts are nearly always kept), two slots.
fn tiny() -> &'static LlamaEngine {
    static ENGINE: OnceLock<LlamaEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let path = random_smollm2_vocabulary();
        load_with_draft(&path, Some(&path), 2).unwrap()
    })
}

/// A request for `num_predict` tokens that drafts up to `draft` tokens a step (none if 0), at
/// every step whether it pays or not: these tests are about what drafting gives, not its speed.
fn request(prompt: &str, sampling: Sampling, num_predict: u32, draft: u32) -> CompletionRequest {
    let mut req = common::request(prompt, sampling, Some(num_predict));
    req.speculation = (draft > 0).then_some(Speculation { max_tokens: draft, always: true });
    req
}

fn chat(user: &str) -> String {
    format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
}

const CODE: &str = "def mean(values):\n    total = 0\n    for value in values:\n        total += value\n    return total / len(values)\n";

fn prompts() -> Vec<String> {
    vec![
        chat(&format!(
            "Rename the function `mean` to `average` in this code and show the whole code:\n```python\n{CODE}```"
        )),
        chat("What is the capital of France? Answer in one sentence."),
        chat("Write a Python function that checks whether a number is prime."),
        chat(&format!("Repeat this text exactly: {}", "the quick brown fox jumps over the lazy dog. ".repeat(3))),
    ]
}

/// Checks that `drafted` gave what `plain` did, with the same log-probabilities up to rounding.
///
/// Rounding is not nothing: llama.cpp computes a batch of several tokens through other kernels
/// than a single token for some weight types (the activations quantized in blocks of 32 for the
/// tiled Q8_0 code, of 256 for the K-quant dot products), so a token checked inside a draft can
/// get logits a little off those it gets alone. Measured: 0 on SmolLM2 (Q4_1) at every token,
/// up to 0.07 nats on Qwen2.5-Coder-0.5B (Q4_K_M) at tokens decoded in a batch and 0 again at
/// the next token decoded alone (the cache itself does not drift). So greedy answers may part
/// where the two best tokens are that close: allowed where the plain run's two best are within
/// 0.25 nats and the other run took the second. A real fault (a token at the wrong position, a
/// stale cache cell) gives logits far off, and parts where the model is sure.
const ROUNDING: f32 = 0.25;

fn agree(prompt: &str, plain: &Output, drafted: &Output, greedy: bool) {
    let context = || format!("prompt {prompt:?}:\n{}\n---\n{}", plain.text, drafted.text);
    let same = plain.logprobs.iter().zip(&drafted.logprobs).take_while(|(a, b)| a.token == b.token);
    let off = same.map(|(a, b)| (a.logprob - b.logprob).abs()).fold(0.0f32, f32::max);
    assert!(off < ROUNDING, "log-probabilities {off} nats apart: {}", context());
    let Some(at) = plain.tokens.iter().zip(&drafted.tokens).position(|(a, b)| a != b) else {
        assert_eq!(plain.tokens.len(), drafted.tokens.len(), "{}", context());
        assert_eq!((&plain.text, plain.reason), (&drafted.text, drafted.reason));
        return;
    };
    assert!(greedy, "sampled answers part at token {at}: {}", context());
    let n_prompt = plain.tokens.len() - plain.usage.generated_tokens as usize;
    let step = &plain.logprobs[at - n_prompt];
    let (best, second) = (&step.top_logprobs[0], &step.top_logprobs[1]);
    let margin = best.logprob - second.logprob;
    assert_eq!(drafted.logprobs[at - n_prompt].token, second.token, "{}", context());
    eprintln!("parted at a tie: {:?} {} vs {:?} {}", best.token, best.logprob, second.token, second.logprob);
    assert!(margin < ROUNDING, "parted at token {at} where the model was sure ({margin} nats): {}", context());
}

/// Runs every prompt with and without drafting and checks the answers agree (see [`agree`]);
/// returns the drafted and kept totals, and those of the editing prompt (the first).
fn same_with_and_without(engine: &LlamaEngine, sampling: Sampling) -> ((u32, u32), (u32, u32)) {
    let greedy = sampling.temperature <= 0.0;
    let mut totals = (0, 0);
    let mut first = None;
    for prompt in prompts() {
        let mut req = request(&prompt, sampling.clone(), 120, 0);
        req.logprobs = Some(2);
        let plain = run(engine, req);
        let mut req = request(&prompt, sampling.clone(), 120, 8);
        req.logprobs = Some(2);
        let drafted = run(engine, req);
        agree(&prompt, &plain, &drafted, greedy);
        assert_eq!((plain.usage.draft_tokens, plain.usage.draft_accepted), (0, 0));
        assert!(drafted.usage.draft_accepted <= drafted.usage.draft_tokens);
        let counts = (drafted.usage.draft_tokens, drafted.usage.draft_accepted);
        first.get_or_insert(counts);
        totals = (totals.0 + counts.0, totals.1 + counts.1);
        eprintln!(
            "drafted {} kept {} of {} tokens: {:?}",
            counts.0,
            counts.1,
            plain.usage.generated_tokens,
            &prompt[..40]
        );
    }
    (totals, first.unwrap())
}

#[test]
fn issue_15_greedy_output_is_the_same_with_prompt_lookup() {
    for (name, path) in [("smollm2", corral_testkit::smollm2()), ("qwen coder", corral_testkit::qwen_coder())] {
        let engine = load(&path, 1);
        let (totals, edit) = same_with_and_without(&engine, greedy());
        eprintln!("{name}: drafted {} kept {}; editing prompt: drafted {} kept {}", totals.0, totals.1, edit.0, edit.1);
        // The answers quote their prompts (the code, the repeated sentence): drafts are kept.
        assert!(totals.1 >= 30, "{name}: kept only {} of {} drafted", totals.1, totals.0);
    }
}

#[test]
fn issue_15_seeded_sampling_is_the_same_with_prompt_lookup_and_a_draft_model() {
    let smollm2 = corral_testkit::smollm2();
    let sampling = Sampling { temperature: 0.7, top_k: 40, top_p: 0.95, seed: Some(11), ..Default::default() };
    for draft in [None, Some(&smollm2)] {
        let engine = load_with_draft(&smollm2, draft.map(PathBuf::as_path), 1).unwrap();
        let (totals, _) = same_with_and_without(&engine, sampling.clone());
        assert!(totals.1 > 0, "draft {draft:?}: no draft kept: {totals:?}");
    }
}

/// SmolLM2 drafting for itself (its drafts are what it would write: nearly all kept) and a random
/// model with its vocabulary (nearly all rejected): the answers are SmolLM2's either way. A draft
/// with another vocabulary is refused at load.
///
/// Prompt lookup proposes first and the draft model where lookup finds nothing (issue 33), so the
/// draft model shows as the drafts beyond what lookup alone makes on the same prompts.
#[test]
fn issue_15_greedy_output_is_the_same_with_a_draft_model() {
    let smollm2 = corral_testkit::smollm2();
    let alone = load_with_draft(&smollm2, None, 1).unwrap();
    let (lookup, _) = same_with_and_without(&alone, greedy());
    drop(alone);
    eprintln!("lookup alone: drafted {} kept {}", lookup.0, lookup.1);
    for (name, draft) in [("itself", smollm2.clone()), ("random", random_smollm2_vocabulary())] {
        let engine = load_with_draft(&smollm2, Some(&draft), 1).unwrap();
        let (totals, _) = same_with_and_without(&engine, greedy());
        eprintln!("draft {name}: drafted {} kept {}", totals.0, totals.1);
        assert!(totals.0 > lookup.0, "the draft model drafted nothing beyond lookup: {totals:?} {lookup:?}");
        if name == "itself" {
            // Its own drafts are all kept: every kept token beyond lookup's is the model's.
            assert!(totals.1 - lookup.1 >= (totals.0 - lookup.0) * 9 / 10, "{totals:?} {lookup:?}");
        }
    }
    let refused = load_with_draft(&smollm2, Some(&corral_testkit::qwen_coder()), 1).err().expect("a load error");
    assert!(refused.to_string().contains("do not share a vocabulary"), "{refused}");
}

/// The random model drafting for itself keeps most drafts: two sequences, one drafting and one
/// not, decode in the same steps and each gives what it gives alone; budgets, stops, grammars
/// and logprobs hold for the drafting one.
#[test]
fn issue_15_drafting_shares_steps_and_keeps_the_limits() {
    let engine = tiny();
    let prompt = "Once upon a time there was a little robot";
    let alone = run(engine, request(prompt, greedy(), 200, 0));
    let drafted = run(engine, request(prompt, greedy(), 200, 6));
    assert_eq!(alone.tokens, drafted.tokens);
    assert!(drafted.usage.draft_accepted > 0, "{:?}", drafted.usage);
    assert_eq!(drafted.usage.generated_tokens, 200, "the budget is exact with drafting");

    let together: Vec<Output> = std::thread::scope(|s| {
        let a = s.spawn(|| run(engine, request(prompt, greedy(), 200, 6)));
        let b = s.spawn(|| run(engine, request("The weather today", greedy(), 150, 0)));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    assert_eq!(together[0].tokens, alone.tokens);
    assert_eq!(together[1].tokens, run(engine, request("The weather today", greedy(), 150, 0)).tokens);
    assert!(together[0].usage.shared_steps > 0 || together[1].usage.shared_steps > 0);

    // A stop sequence cuts the answer at the same place.
    let cut: String = alone.text.chars().skip(30).take(6).collect();
    let stop = |draft| {
        let mut r = request(prompt, greedy(), 200, draft);
        r.stop = vec![cut.clone()];
        run(engine, r)
    };
    let (plain, spec) = (stop(0), stop(6));
    assert_eq!(plain.text, spec.text);
    assert_eq!(spec.reason, DoneReason::Stop);
    assert!(!spec.text.contains(&cut));

    // Logprobs are those of the plain run.
    let with_logprobs = |draft| {
        let mut r = request(prompt, greedy(), 60, draft);
        r.logprobs = Some(2);
        run(engine, r).logprobs
    };
    let (plain, spec) = (with_logprobs(0), with_logprobs(6));
    assert_eq!(plain.len(), 60);
    assert_eq!(plain.len(), spec.len());
    for (a, b) in plain.iter().zip(&spec) {
        assert_eq!(a.token, b.token);
        assert!((a.logprob - b.logprob).abs() < 1e-3, "{a:?} vs {b:?}");
    }

    // A grammar still holds, and gives what it gives without drafting.
    let grammar = |draft| {
        let mut r = request("Give me JSON:", greedy(), 60, draft);
        r.constraint = Some(Constraint::Grammar(r#"root ::= "{\"answer\": " [1-9] [0-9]? [0-9]? "}""#.into()));
        run(engine, r)
    };
    let (plain, spec) = (grammar(0), grammar(6));
    assert_eq!(spec.reason, DoneReason::Stop, "{:?}", spec.text);
    assert_eq!(plain.text, spec.text);
    let v: serde_json::Value = serde_json::from_str(&spec.text).unwrap_or_else(|e| panic!("{e}: {:?}", spec.text));
    assert!(v["answer"].is_u64(), "{v}");
}

/// Issue 15: a job drafts only while a drafted token costs less time than it saves. A model
/// drafting for itself takes as long to propose a token as to decode one, and checking it adds
/// to that: it can never pay, however many drafts are kept. So once the engine has measured that
/// (in this job's first steps, or earlier ones), the job drafts no more and tries nothing (even
/// a kept draft would not pay); told to draft always, it drafts all the way. The answer is the
/// same either way.
#[test]
fn issue_15_drafting_stops_where_it_cannot_pay() {
    let engine = tiny();
    let prompt = "Once upon a time there was a little robot";
    let always = run(engine, request(prompt, greedy(), 200, 6));
    let mut req = request(prompt, greedy(), 200, 6);
    req.speculation = req.speculation.map(|s| Speculation { always: false, ..s });
    let paced = run(engine, req);
    assert_eq!(always.tokens, paced.tokens);
    let (a, p) = (always.usage.draft_tokens, paced.usage.draft_tokens);
    eprintln!("drafted {a} tokens always, {p} when paced");
    assert!(a >= 150, "drafting always drafted only {a} tokens");
    assert!(p * 4 < a, "paced drafting drafted {p} tokens, always {a}");
}

/// Sampling with drafts keeps the model's distribution (issue 15), counted on a random model of
/// eight letters. A drafted token is kept when the token sampled at its position is the same,
/// and otherwise the sampled token replaces it; done right, every token is drawn from the
/// distribution the model gives at its position, whatever was drafted. Done wrong (a draft kept
/// unchecked, a position's logits taken for another's, a sampler that draws twice from the same
/// numbers), the drafted positions lean towards the drafts.
///
/// Each run samples eight letters at temperature 0.6 (a grammar keeps the end token out) and
/// reports every letter's log-probability at each position, which gives the distribution the
/// token there must follow. For every position and letter, the count of draws is compared with
/// the sum of those probabilities: z, the difference over its standard deviation, is about
/// normal when the draws follow the model. Every |z| must stay under 5 (64 of them per mode:
/// about 1 in 30,000 that one passes 5 by chance) and their squares must sum to under 120 (about
/// 56 expected, 11 its standard deviation), which catches a small lean spread over many cells.
/// The seeds are fixed, so a pass or a fail repeats. Checked to fail: keeping drafts unchecked
/// (z 156) and sampling a drafted position from the logits of the one before (sums 131 and 223).
/// Modes: plain decoding, prompt lookup (the prompt is the model's own greedy text, so lookups
/// match) and the model drafting for itself.
#[test]
fn issue_15_sampled_tokens_follow_the_models_distribution_when_drafting() {
    const LETTERS: &str = "abcdefgh";
    const POSITIONS: usize = 8;
    const RUNS: u64 = 3000;
    const TEMPERATURE: f32 = 0.6;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("letters.gguf");
    let tokenizer = corral_testkit::letters_tokenizer(LETTERS);
    std::fs::write(&path, corral_testkit::tiny_llama(&corral_testkit::TinySpec::default(), Some(&tokenizer))).unwrap();
    let plain = load(&path, 1);
    let with_itself = load_with_draft(&path, Some(&path), 1).unwrap();

    // Exactly `n` letters: asked for two more than are generated, the end token is never allowed.
    let grammar = |n: usize| Constraint::Grammar(format!("root ::= {}", format!("[{LETTERS}] ").repeat(n)));
    // The prompt is what the model writes greedily: samples at a low temperature often take the
    // same turns, so lookups match and their drafts are often kept.
    let mut req = request(LETTERS, greedy(), 300, 0);
    req.constraint = Some(grammar(300));
    let prompt = format!("{LETTERS}{}", run(&plain, req).text);
    let modes = [("plain", &plain, 0), ("prompt lookup", &plain, 8), ("draft model", &with_itself, 8)];
    for (mode_index, (mode, engine, draft)) in modes.into_iter().enumerate() {
        // For each position and letter: draws minus expected draws, and the variance of that.
        let mut excess = [[0f64; LETTERS.len()]; POSITIONS];
        let mut variance = [[0f64; LETTERS.len()]; POSITIONS];
        let (mut drafted, mut kept) = (0, 0);
        for run_index in 0..RUNS {
            let sampling = Sampling {
                temperature: TEMPERATURE,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                // Each mode its own seeds: three independent samples.
                seed: Some((mode_index as u32) << 16 | run_index as u32),
                ..Default::default()
            };
            let mut req = request(&prompt, sampling, POSITIONS as u32, draft);
            req.constraint = Some(grammar(POSITIONS + 2));
            req.logprobs = Some(LETTERS.len() as u32 + 1);
            let out = run(engine, req);
            assert_eq!((out.reason, out.logprobs.len()), (DoneReason::Length, POSITIONS), "{mode}: {:?}", out.text);
            drafted += out.usage.draft_tokens;
            kept += out.usage.draft_accepted;
            for (position, step) in out.logprobs.iter().enumerate() {
                let logprob = |letter: char| {
                    let found = step.top_logprobs.iter().find(|t| t.token == letter.to_string());
                    found.unwrap_or_else(|| panic!("{mode}: no log-probability for {letter:?}: {step:?}")).logprob
                };
                // The sampler's distribution: the letters' probabilities at the temperature,
                // renormalised without the end token the grammar forbids.
                let weights: Vec<f64> = LETTERS.chars().map(|c| f64::from(logprob(c) / TEMPERATURE).exp()).collect();
                let total: f64 = weights.iter().sum();
                for (i, letter) in LETTERS.chars().enumerate() {
                    let p = weights[i] / total;
                    let drawn = f64::from(u8::from(step.token == letter.to_string()));
                    excess[position][i] += drawn - p;
                    variance[position][i] += p * (1.0 - p);
                }
            }
        }
        let mut worst = (0.0f64, 0, ' ');
        let mut squares = 0.0;
        for (position, (excess, variance)) in excess.iter().zip(&variance).enumerate() {
            for ((e, v), letter) in excess.iter().zip(variance).zip(LETTERS.chars()) {
                let z = e / v.sqrt();
                squares += z * z;
                if z.abs() > worst.0.abs() {
                    worst = (z, position, letter);
                }
            }
        }
        eprintln!(
            "{mode}: drafted {drafted}, kept {kept}; largest deviation {:.2} standard deviations ({:?} at position {}), squares sum to {squares:.1}",
            worst.0, worst.2, worst.1
        );
        assert!(
            worst.0.abs() < 5.0,
            "{mode}: {:?} at position {} is {:.2} standard deviations off",
            worst.2,
            worst.1,
            worst.0
        );
        assert!(squares < 120.0, "{mode}: the squared deviations sum to {squares:.1}");
        if draft > 0 {
            // Enough drafts are kept for a leaning towards them to show.
            assert!(kept as u64 >= RUNS / 4, "{mode}: only {kept} of {drafted} drafted tokens kept");
        }
    }
}
