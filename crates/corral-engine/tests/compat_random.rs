//! gpt-oss and LFM2 with random weights, written in llama.cpp's layout and in the one Ollama
//! published them in: the translation turns the published header into the reference's, the two
//! files then compute the same answer, and without the translation the published one does not load.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_same_answers, finish, greedy, options, request, Output};
use corral_engine::LlamaEngine;
use corral_gguf::{Gguf, MetaValue};
use corral_testkit::Layout;

type Fixture = fn(Layout, &Gguf, u64) -> Vec<u8>;

const PROMPT: &str = "Once upon a time, in a land far away,";
const STEPS: usize = 12;

/// Both layouts of one fixture, written under `dir`: (llama.cpp's, published).
fn write_both(dir: &Path, name: &str, make: Fixture) -> (PathBuf, PathBuf) {
    let tokenizer = corral_gguf::read_path(&corral_testkit::smollm2()).expect("SmolLM2's header parses");
    let reference = dir.join(format!("{name}-llama-cpp.gguf"));
    let published = dir.join(format!("sha256-{name}-published"));
    std::fs::write(&reference, make(Layout::LlamaCpp, &tokenizer, 11)).unwrap();
    std::fs::write(&published, make(Layout::Published, &tokenizer, 11)).unwrap();
    (reference, published)
}

/// Keys with their values, in an order that does not depend on the file's.
fn sorted_keys(g: &Gguf) -> Vec<(String, String)> {
    // Debug text makes the values comparable (F32 has no Ord), and equal values print equally.
    let mut keys: Vec<(String, String)> = g.metadata.iter().map(|(k, v)| (k.clone(), format!("{v:?}"))).collect();
    keys.sort();
    keys
}

fn sorted_tensors(g: &Gguf) -> Vec<(String, Vec<u64>, String)> {
    let mut tensors: Vec<_> =
        g.tensors.iter().map(|t| (t.name.clone(), t.dims.clone(), t.kind.name().to_string())).collect();
    tensors.sort();
    tensors
}

/// The translation of the published header is the reference's header, keys and tensors alike.
fn assert_translates_to_reference(reference: &Path, published: &Path, handler: &str) {
    let want = corral_gguf::read_path(reference).unwrap();
    let header = corral_gguf::read_path(published).unwrap();
    assert_eq!(corral_compat::translate(&want).unwrap(), None, "llama.cpp's layout is left alone");
    let translation = corral_compat::translate(&header).unwrap().expect("the published layout is recognised");
    assert_eq!(translation.handler, handler);
    let seen = translation.apply(&header);
    // Only the entries on one side: the tokenizer's arrays make the whole lists unreadable.
    let (seen_keys, want_keys) = (sorted_keys(&seen), sorted_keys(&want));
    let extra: Vec<_> = seen_keys.iter().filter(|k| !want_keys.contains(k)).collect();
    let missing: Vec<_> = want_keys.iter().filter(|k| !seen_keys.contains(k)).collect();
    assert!(extra.is_empty() && missing.is_empty(), "translated header has {extra:?}, lacks {missing:?}");
    assert_eq!(seen_keys.len(), want_keys.len());
    assert_eq!(sorted_tensors(&seen), sorted_tensors(&want));
    // The translation changed something that matters, or the comparison proves nothing.
    assert_ne!(sorted_tensors(&header), sorted_tensors(&want));
}

/// A greedy answer with the top five alternatives of every step.
fn answer(path: &Path) -> Output {
    let engine = LlamaEngine::load(options(path, 512, 1), |_| {})
        .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
    let mut req = request(PROMPT, greedy(), Some(STEPS as u32));
    req.logprobs = Some(5);
    finish(&engine, req)
}

/// Without the translation the published file must fail, and the error must name its
/// architecture.
fn assert_refused_untranslated(published: &Path, arch: &str) {
    let opts = corral_types::runner::LoadOptions { no_compat: true, ..options(published, 512, 1) };
    let err = LlamaEngine::load(opts, |_| {}).err().expect("the untranslated file must not load").to_string();
    assert!(err.contains(&format!("architecture {arch}")), "{err}");
}

fn check(name: &str, make: Fixture, handler: &str, published_arch: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (reference, published) = write_both(dir.path(), name, make);
    assert_translates_to_reference(&reference, &published, handler);
    let want = answer(&reference);
    let got = answer(&published);
    assert_eq!(want.logprobs.len(), STEPS, "{want:?}");
    // The same bytes through the same kernels: equal to the last bit.
    assert_same_answers(&want, &got, 0.0);
    assert_refused_untranslated(&published, published_arch);
}

#[test]
fn published_gpt_oss_answers_as_the_llama_cpp_layout_does() {
    check("gpt-oss", corral_testkit::tiny_gpt_oss, "gptoss", "gptoss");
}

#[test]
fn published_lfm2_answers_as_the_llama_cpp_layout_does() {
    check("lfm2", corral_testkit::tiny_lfm2, "lfm2", "lfm2");
}

/// The fixtures differ where the translation says they do, and nowhere else.
#[test]
fn the_layouts_differ_only_where_ollamas_did() {
    let tokenizer = corral_gguf::read_path(&corral_testkit::smollm2()).unwrap();
    let oss = corral_gguf::read_bytes(&corral_testkit::tiny_gpt_oss(Layout::Published, &tokenizer, 1)).unwrap();
    assert_eq!(oss.architecture(), Some("gptoss"));
    assert!(oss.get("gptoss.expert_feed_forward_length").is_none());
    assert!(oss.get("gptoss.rope.scaling.type").is_none());
    let reference = corral_gguf::read_bytes(&corral_testkit::tiny_gpt_oss(Layout::LlamaCpp, &tokenizer, 1)).unwrap();
    assert_eq!(reference.get("gpt-oss.rope.scaling.type"), Some(&MetaValue::String("yarn".into())));
    assert_eq!(reference.get_str("tokenizer.ggml.pre"), Some("gpt-4o"));

    let lfm = corral_gguf::read_bytes(&corral_testkit::tiny_lfm2(Layout::Published, &tokenizer, 1)).unwrap();
    let reference = corral_gguf::read_bytes(&corral_testkit::tiny_lfm2(Layout::LlamaCpp, &tokenizer, 1)).unwrap();
    assert_ne!(lfm.arch_u64("feed_forward_length"), reference.arch_u64("feed_forward_length"));
    assert_eq!(
        reference.arch_u64("feed_forward_length"),
        Some(reference.tensors.iter().find(|t| t.name == "blk.0.ffn_gate.weight").unwrap().dims[1])
    );
}
