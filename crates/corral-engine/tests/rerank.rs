//! Reranking (issue 29) with the test kit's random-weight cross-encoder
//! ([`corral_testkit::reranker::tiny_reranker`]): loaded for embeddings, its context pools with
//! llama.cpp's RANK, and `embed` with a query scores each document as one pair laid out as
//! llama-server lays it out (`[CLS] query [SEP] document [SEP]` for this vocabulary): one raw
//! score per document, which depends on the document, on the query, and not on what else shares
//! the batch. A `[SEP]` written in a document stays text (special tokens are not parsed).

use corral_engine::{Engine, LlamaEngine};
use corral_types::runner::{EmbedRequest, LoadOptions};

mod common;

const QUERY: &str = "what is a panda?";
const DOCUMENTS: [&str; 3] =
    ["hi", "it is a bear", "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China."];

fn scores(engine: &LlamaEngine, query: &str, documents: &[&str]) -> (Vec<f32>, u32) {
    let inputs = documents.iter().map(|d| d.to_string()).collect();
    let out = engine.embed(EmbedRequest { inputs, truncate: false, query: Some(query.into()) }).unwrap();
    for s in &out.vectors {
        // RANK pooling: `n_cls_out` (one label) floats per sequence, not `n_embd` (64).
        assert_eq!(s.len(), 1, "{s:?}");
        assert!(s[0].is_finite(), "{s:?}");
    }
    (out.vectors.iter().map(|s| s[0]).collect(), out.prompt_tokens)
}

#[test]
fn issue_29_the_tiny_reranker_scores_each_document_against_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reranker.gguf");
    std::fs::write(&path, corral_testkit::reranker::tiny_reranker(1)).unwrap();
    let engine = LlamaEngine::load(LoadOptions { embedding: true, ..common::options(&path, 128, 4) }, |_| {}).unwrap();

    let (together, tokens) = scores(&engine, QUERY, &DOCUMENTS);
    // Raw scores: a normalised one-element vector would be ±1.
    assert!(together.iter().any(|s| (s.abs() - 1.0).abs() > 1e-3), "scores look normalised: {together:?}");
    for i in 0..together.len() {
        for j in i + 1..together.len() {
            assert!((together[i] - together[j]).abs() > 1e-4, "documents {i} and {j} score alike: {together:?}");
        }
    }
    // Each pair is its query's and document's words and three special tokens.
    let words = |t: &str| engine.tokenize(t).unwrap().len() - 2; // without [CLS] … [SEP]
    let want: usize = DOCUMENTS.iter().map(|d| words(QUERY) + words(d) + 3).sum();
    assert_eq!(tokens as usize, want);
    // Each pair scores the same alone as in the batch: the score is its own sequence's.
    for (document, want) in DOCUMENTS.iter().zip(&together) {
        let (alone, _) = scores(&engine, QUERY, &[document]);
        assert!((alone[0] - want).abs() < 1e-4, "{document:?}: {} alone, {want} in the batch", alone[0]);
    }
    // Another query scores the same documents differently.
    let (other, _) = scores(&engine, "where do lighthouses stand?", &DOCUMENTS);
    assert!(other.iter().zip(&together).all(|(a, b)| (a - b).abs() > 1e-4), "{other:?} vs {together:?}");
    // A [SEP] written in a document is text: `[`, `sep`, `]`.
    let (_, written) = scores(&engine, QUERY, &["[SEP]"]);
    assert_eq!(written as usize, words(QUERY) + 3 + 3);
}
