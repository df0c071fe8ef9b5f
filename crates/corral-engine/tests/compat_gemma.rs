//! The Gemma variants Ollama published in a layout of its own (Gemma 3n, Gemma 4 and
//! EmbeddingGemma), as random-weight models: the translation turns each published header into
//! the one llama.cpp's converter writes, the two files then compute the same thing to the last
//! bit (answers for the generative two, pooled vectors for the embedding model), and without the
//! translation the published file does not load.

mod common;

use common::compat::{assert_refused_untranslated, assert_translates_to_reference, check, write_both, Keys};
use common::options;
use corral_engine::{Engine, LlamaEngine};
use corral_gguf::{ArrayValue, MetaValue};
use corral_testkit::Layout;
use corral_testkit::{tiny_embeddinggemma, tiny_gemma3n, tiny_gemma4};
use corral_types::runner::{EmbedRequest, Embedded, LoadOptions};

#[test]
fn published_gemma3n_answers_as_the_llama_cpp_layout_does() {
    check("gemma3n", tiny_gemma3n, "gemma3n", "gemma3n", Keys::Equal);
}

#[test]
fn published_gemma4_answers_as_the_llama_cpp_layout_does() {
    // The vision and audio keys stay behind.
    check("gemma4", tiny_gemma4, "gemma4", "gemma4", Keys::Superset);
}

/// Pooled embeddings of a few texts of different lengths, some longer than the sliding window.
fn embed(path: &std::path::Path) -> Embedded {
    let opts = LoadOptions { embedding: true, ..options(path, 512, 2) };
    let engine = LlamaEngine::load(opts, |_| {}).unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
    let inputs = ["Hello", "Once upon a time, in a land far away, there lived a cat.", "The quick brown fox"];
    engine.embed(EmbedRequest { inputs: inputs.map(String::from).to_vec(), truncate: false, query: None }).unwrap()
}

/// Ollama's copy keeps the old prefix's keys only until the translation moves them: the
/// translated header has exactly the reference's keys.
#[test]
fn published_embeddinggemma_embeds_as_the_llama_cpp_layout_does() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, published) = write_both(dir.path(), "embeddinggemma", tiny_embeddinggemma);
    assert_translates_to_reference(&reference, &published, "embeddinggemma", Keys::Equal);
    let want = embed(&reference);
    assert_eq!(want.vectors.len(), 3);
    for v in &want.vectors {
        assert_eq!(v.len(), 64);
        assert!(v.iter().any(|x| *x != 0.0), "{v:?}");
    }
    assert_ne!(want.vectors[0], want.vectors[1]);
    // The same bytes through the same kernels: equal to the last bit.
    assert_eq!(embed(&published), want);
    assert_refused_untranslated(&published, "gemma3");
}

/// The fixtures differ where Ollama's files did.
#[test]
fn the_layouts_differ_only_where_ollamas_did() {
    let tokenizer = corral_gguf::read_path(&corral_testkit::smollm2()).unwrap();
    let read = |make: common::compat::Fixture, layout| corral_gguf::read_bytes(&make(layout, &tokenizer, 1)).unwrap();

    let g3n = read(tiny_gemma3n, Layout::Published);
    let rows = |name: &str| g3n.tensors.iter().find(|t| t.name == name).unwrap().dims[1];
    assert!(rows("token_embd.weight") > rows("per_layer_token_embd.weight"));
    let reference = read(tiny_gemma3n, Layout::LlamaCpp);
    let types = |g: &corral_gguf::Gguf| match g.get("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(ArrayValue::I32(t))) => t[17..20].to_vec(),
        other => panic!("{other:?}"),
    };
    // `<0x00>`…: bytes in llama.cpp's copy, normal tokens in Ollama's.
    assert_eq!((types(&reference), types(&g3n)), (vec![6; 3], vec![1; 3]));

    let g4 = read(tiny_gemma4, Layout::Published);
    assert_eq!(g4.get_str("tokenizer.ggml.model"), Some("llama"));
    assert!(g4.tensors.iter().any(|t| t.name.starts_with("a.")));
    assert_eq!(read(tiny_gemma4, Layout::LlamaCpp).get_str("tokenizer.ggml.model"), Some("gemma4"));

    let eg = read(tiny_embeddinggemma, Layout::Published);
    assert_eq!(eg.architecture(), Some("gemma3"));
    assert_eq!(eg.get("gemma3.attention.causal"), Some(&MetaValue::Bool(false)));
    assert!(eg.get("gemma3.dense_2_feat_in").is_none());
    assert_eq!(read(tiny_embeddinggemma, Layout::LlamaCpp).architecture(), Some("gemma-embedding"));
}
