//! The test kit's random-weight reranker ([`corral_testkit::reranker::tiny_reranker`]) is a
//! reranker to llama.cpp: loaded for embeddings, its context pools with RANK, and the engine's
//! `embed` gives one raw score per input (the classifier's single output, not a vector, and not
//! normalised), which depends on the text and not on what else shares the batch.
//!
//! llama-server scores a pair as `[CLS] query [SEP] document [SEP]` (its `format_prompt_rerank`,
//! with this vocabulary's flags). `embed` cannot be handed that sequence: it tokenizes each input
//! with special tokens added but not parsed, so it wraps the text in `[CLS] … [SEP]` and a
//! `[SEP]` written in the text is read as the three tokens `[`, `sep`, `]`. The pairs below are
//! therefore the query and the document joined by a space, the nearest a text input comes.

use corral_engine::{Engine, LlamaEngine};
use corral_types::runner::{EmbedRequest, LoadOptions};

mod common;

const QUERY: &str = "what is a panda?";
const DOCUMENTS: [&str; 3] =
    ["hi", "it is a bear", "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China."];

fn scores(engine: &LlamaEngine, inputs: &[String]) -> (Vec<Vec<f32>>, u32) {
    let out = engine.embed(EmbedRequest { inputs: inputs.to_vec(), truncate: false }).unwrap();
    (out.vectors, out.prompt_tokens)
}

#[test]
fn the_tiny_reranker_gives_one_raw_score_per_pair() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reranker.gguf");
    std::fs::write(&path, corral_testkit::reranker::tiny_reranker(1)).unwrap();
    let engine = LlamaEngine::load(LoadOptions { embedding: true, ..common::options(&path, 128, 4) }, |_| {}).unwrap();

    let pairs: Vec<String> = DOCUMENTS.iter().map(|d| format!("{QUERY} {d}")).collect();
    let (together, tokens) = scores(&engine, &pairs);
    eprintln!("scores of {pairs:?}: {together:?} ({tokens} prompt tokens)");
    assert_eq!(together.len(), DOCUMENTS.len());
    for s in &together {
        // RANK pooling: `n_cls_out` (one label) floats per sequence, not `n_embd` (64).
        assert_eq!(s.len(), 1, "{s:?}");
        assert!(s[0].is_finite(), "{s:?}");
    }
    let flat: Vec<f32> = together.iter().map(|s| s[0]).collect();
    // Raw scores: a normalised one-element vector would be ±1.
    assert!(flat.iter().any(|s| (s.abs() - 1.0).abs() > 1e-3), "scores look normalised: {flat:?}");
    // Every document scores differently against the query.
    for i in 0..flat.len() {
        for j in i + 1..flat.len() {
            assert!((flat[i] - flat[j]).abs() > 1e-4, "documents {i} and {j} score alike: {flat:?}");
        }
    }
    // Each pair scores the same alone as in the batch: the score is its own sequence's.
    for (pair, want) in pairs.iter().zip(&flat) {
        let (alone, _) = scores(&engine, std::slice::from_ref(pair));
        assert!((alone[0][0] - want).abs() < 1e-4, "{pair:?}: {} alone, {want} in the batch", alone[0][0]);
    }
    // The query alone scores differently again (the document counts).
    let (query_only, _) = scores(&engine, &[QUERY.to_string()]);
    assert!(flat.iter().all(|s| (s - query_only[0][0]).abs() > 1e-4), "{query_only:?} vs {flat:?}");

    // What `embed` makes of a `[SEP]` in the text: [CLS] [ sep ] [SEP], five tokens, where the
    // engine's own tokenizer (which parses special tokens) reads [CLS] [SEP] [SEP].
    let (_, written) = scores(&engine, &["[SEP]".to_string()]);
    assert_eq!(written, 5);
    assert_eq!(engine.tokenize("[SEP]").unwrap(), [101, 102, 102]);
}
