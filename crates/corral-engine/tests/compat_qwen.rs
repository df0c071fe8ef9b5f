//! Qwen architectures with random weights in llama.cpp's layout and in Ollama's (Qwen2.5-VL,
//! Qwen 3.5 dense and MoE, Qwen3-Next, Qwen3-VL MoE): the translation turns the published header
//! into the reference's, both files then give the same answer to the bit, and without the
//! translation the published one does not load.

mod common;

use std::path::Path;

use common::assert_same_answers;
use common::compat::{
    answer, assert_refused_untranslated, check, sorted_keys, sorted_tensors, write_both, Keys, STEPS,
};

/// The translated Qwen2.5-VL header is the reference's, except for published keys that moved
/// from `qwen25vl.` to `qwen2vl.` and that llama.cpp does not read (the three-entry
/// `rope.mrope_section`, the vision keys). The common check cannot allow those: their names are
/// in neither file.
fn assert_translates_with_new_prefix(reference: &Path, published: &Path) {
    let want = corral_gguf::read_path(reference).unwrap();
    let header = corral_gguf::read_path(published).unwrap();
    assert_eq!(corral_compat::translate(&want).unwrap(), None, "llama.cpp's layout is left alone");
    let translation = corral_compat::translate(&header).unwrap().expect("the published layout is recognised");
    assert_eq!(translation.handler, "qwen25vl");
    let seen = translation.apply(&header);
    assert_eq!(seen.architecture(), Some("qwen2vl"));
    let (seen_keys, want_keys, published_keys) = (sorted_keys(&seen), sorted_keys(&want), sorted_keys(&header));
    let missing: Vec<_> = want_keys.iter().filter(|k| !seen_keys.contains(k)).collect();
    assert!(missing.is_empty(), "translated header lacks {missing:?}");
    let invented: Vec<_> = seen_keys
        .iter()
        .filter(|k| !want_keys.contains(k))
        .filter(|(key, value)| {
            let old = key.strip_prefix("qwen2vl.").map(|rest| format!("qwen25vl.{rest}"));
            !old.is_some_and(|old| published_keys.contains(&(old, value.clone())))
        })
        .collect();
    assert!(invented.is_empty(), "the translation wrote {invented:?}, which neither file has");
    assert!(seen.metadata.iter().all(|(k, _)| !k.starts_with("qwen25vl.")), "keys left under the old prefix");
    assert_eq!(sorted_tensors(&seen), sorted_tensors(&want));
}

#[test]
fn published_qwen25vl_answers_as_the_llama_cpp_layout_does() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, published) = write_both(dir.path(), "qwen25vl", corral_testkit::tiny_qwen25vl);
    assert_translates_with_new_prefix(&reference, &published);
    let want = answer(&reference);
    assert_eq!(want.logprobs.len(), STEPS, "{want:?}");
    assert_same_answers(&want, &answer(&published), 0.0);
    assert_refused_untranslated(&published, "qwen25vl");
}

#[test]
fn published_qwen35_answers_as_the_llama_cpp_layout_does() {
    // Ollama's markers and vision keys stay behind.
    check("qwen35", corral_testkit::tiny_qwen35, "qwen35", "qwen35", Keys::Superset);
}

#[test]
fn published_qwen3next_answers_as_the_llama_cpp_layout_does() {
    check("qwen3next", corral_testkit::tiny_qwen3next, "qwen3next", "qwen3next", Keys::Equal);
}

#[test]
fn published_qwen35moe_answers_as_the_llama_cpp_layout_does() {
    // As for the dense model, with `feed_forward_length` among the markers left behind.
    check("qwen35moe", corral_testkit::tiny_qwen35moe, "qwen35moe", "qwen35moe", Keys::Superset);
}

#[test]
fn published_qwen3vlmoe_answers_as_the_llama_cpp_layout_does() {
    // The vision keys stay behind.
    check("qwen3vlmoe", corral_testkit::tiny_qwen3vlmoe, "qwen3vlmoe", "qwen3vlmoe", Keys::Superset);
}
