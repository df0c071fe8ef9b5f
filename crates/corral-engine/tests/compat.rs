//! Gemma 3 270M (real weights) in the layout Ollama published Gemma 3 in loads through the
//! translation and computes exactly what the same weights in llama.cpp's layout compute; without
//! the translation it does not load, and the error says why.

mod common;

use common::{assert_same_answers, finish, greedy, options, request};
use corral_engine::LlamaEngine;

#[test]
fn published_gemma3_answers_as_the_llama_cpp_layout_does() {
    let dir = tempfile::tempdir().unwrap();
    let reference = corral_testkit::gemma3();
    let published = dir.path().join("sha256-published-gemma3");
    std::fs::write(&published, corral_testkit::gemma3_as_published(&reference)).unwrap();

    // The header the loader sees is the reference's, less nothing it reads: same tensors, and
    // every key of the reference with its value.
    let header = corral_gguf::read_path(&published).unwrap();
    let translation = corral_compat::translate(&header).unwrap().expect("a published Gemma 3 is recognised");
    assert_eq!(translation.handler, "gemma3");
    let seen = translation.apply(&header);
    let original = corral_gguf::read_path(&reference).unwrap();
    let shape =
        |g: &corral_gguf::Gguf| g.tensors.iter().map(|t| (t.name.clone(), t.dims.clone(), t.kind)).collect::<Vec<_>>();
    assert_eq!(shape(&seen), shape(&original));
    for (key, value) in &original.metadata {
        assert_eq!(seen.get(key), Some(value), "{key}");
    }

    let answer = |path: &std::path::Path| {
        let engine = LlamaEngine::load(options(path, 256, 1), |_| {}).unwrap();
        let mut req = request("The capital of France is", greedy(), Some(8));
        req.logprobs = Some(5);
        finish(&engine, req)
    };
    let want = answer(&reference);
    let got = answer(&published);
    assert_eq!(want.logprobs.len(), 8);
    // The same bytes through the same kernels: equal to the last bit, so the bound is 0.
    assert_same_answers(&want, &got, 0.0);
}

#[test]
fn without_the_translation_a_published_gemma3_says_why_it_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let published = dir.path().join("sha256-published-gemma3");
    std::fs::write(&published, corral_testkit::gemma3_as_published(&corral_testkit::gemma3())).unwrap();
    let opts = corral_types::runner::LoadOptions { no_compat: true, ..options(&published, 256, 1) };
    let err = LlamaEngine::load(opts, |_| {}).err().expect("the untranslated file must not load").to_string();
    assert!(err.contains("architecture gemma3"), "{err}");
    // llama.cpp's own reason, not just "null result": the tokenizer's extra entry or the
    // vision tensors it was not asked for.
    assert!(err.contains("llama.cpp:"), "{err}");
}

/// Quantizing goes through the same loader: without the translation the quantizer refuses the
/// published file too, and its error carries llama.cpp's reason.
#[test]
fn without_the_translation_quantizing_a_published_gemma3_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let published = dir.path().join("sha256-published-gemma3");
    std::fs::write(&published, corral_testkit::gemma3_as_published(&corral_testkit::gemma3())).unwrap();
    let out = dir.path().join("out.gguf");
    // 7: llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0.
    let err = corral_engine::quantize::quantize(&published, &out, 7, 1, false, |_, _| {}).unwrap_err();
    assert!(err.contains("llama.cpp:") && err.contains("layer_norm_rms_epsilon"), "{err}");
}
