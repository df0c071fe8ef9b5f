//! What the tests of published layouts share: a fixture written in both layouts from the same
//! weights, the translated header compared with the reference's, and the two files' answers
//! compared bit for bit.

use std::path::{Path, PathBuf};

use corral_engine::LlamaEngine;
use corral_gguf::Gguf;
use corral_testkit::Layout;

use super::{assert_same_answers, finish, greedy, options, request, Output};

pub type Fixture = fn(Layout, &Gguf, u64) -> Vec<u8>;

pub const PROMPT: &str = "Once upon a time, in a land far away,";
pub const STEPS: usize = 12;

/// Both layouts of one fixture, written under `dir`: (llama.cpp's, published).
pub fn write_both(dir: &Path, name: &str, make: Fixture) -> (PathBuf, PathBuf) {
    let tokenizer = corral_gguf::read_path(&corral_testkit::smollm2()).expect("SmolLM2's header parses");
    let reference = dir.join(format!("{name}-llama-cpp.gguf"));
    let published = dir.join(format!("sha256-{name}-published"));
    std::fs::write(&reference, make(Layout::LlamaCpp, &tokenizer, 11)).unwrap();
    std::fs::write(&published, make(Layout::Published, &tokenizer, 11)).unwrap();
    (reference, published)
}

/// Keys with their values, in an order that does not depend on the file's.
pub fn sorted_keys(g: &Gguf) -> Vec<(String, String)> {
    // Debug text makes the values comparable (F32 has no Ord), and equal values print equally.
    let mut keys: Vec<(String, String)> = g.metadata.iter().map(|(k, v)| (k.clone(), format!("{v:?}"))).collect();
    keys.sort();
    keys
}

pub fn sorted_tensors(g: &Gguf) -> Vec<(String, Vec<u64>, String)> {
    let mut tensors: Vec<_> =
        g.tensors.iter().map(|t| (t.name.clone(), t.dims.clone(), t.kind.name().to_string())).collect();
    tensors.sort();
    tensors
}

/// How the translated header's keys must compare with the reference's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// The same keys with the same values.
    Equal,
    /// Every key of the reference with its value; the others are published keys the translation
    /// copied under llama.cpp's names and left in place (llama.cpp does not read them).
    Superset,
}

/// The translation of the published header is the reference's header: the same tensors, and
/// keys as `keys` says.
pub fn assert_translates_to_reference(reference: &Path, published: &Path, handler: &str, keys: Keys) {
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
    assert!(missing.is_empty(), "translated header lacks {missing:?}");
    match keys {
        Keys::Equal => assert!(extra.is_empty(), "translated header has {extra:?}"),
        Keys::Superset => {
            let published_keys = sorted_keys(&header);
            let invented: Vec<_> = extra.iter().filter(|k| !published_keys.contains(k)).collect();
            assert!(invented.is_empty(), "the translation wrote {invented:?}, which the reference lacks");
        }
    }
    assert_eq!(sorted_tensors(&seen), sorted_tensors(&want));
    // The translation changed something that matters, or the comparison proves nothing.
    assert_ne!((sorted_keys(&header), sorted_tensors(&header)), (want_keys, sorted_tensors(&want)));
}

/// A greedy answer with the top five alternatives of every step.
pub fn answer(path: &Path) -> Output {
    let engine = LlamaEngine::load(options(path, 512, 1), |_| {})
        .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
    answer_of(&engine)
}

pub fn answer_of(engine: &LlamaEngine) -> Output {
    let mut req = request(PROMPT, greedy(), Some(STEPS as u32));
    req.logprobs = Some(5);
    finish(engine, req)
}

/// Without the translation the published file must fail, and the error must name its
/// architecture.
pub fn assert_refused_untranslated(published: &Path, arch: &str) {
    let opts = corral_types::runner::LoadOptions { no_compat: true, ..options(published, 512, 1) };
    let err = LlamaEngine::load(opts, |_| {}).err().expect("the untranslated file must not load").to_string();
    assert!(err.contains(&format!("architecture {arch}")), "{err}");
}

/// Both layouts of a fixture, written under a new directory: the translated header is the
/// reference's, and both files give the same answer. Returns the directory (the files live as
/// long as it does), the published file and the reference's answer.
pub fn compare(name: &str, make: Fixture, handler: &str, keys: Keys) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let (reference, published) = write_both(dir.path(), name, make);
    assert_translates_to_reference(&reference, &published, handler, keys);
    let want = answer(&reference);
    let got = answer(&published);
    assert_eq!(want.logprobs.len(), STEPS, "{want:?}");
    // The same bytes through the same kernels: equal to the last bit.
    assert_same_answers(&want, &got, 0.0);
    (dir, published, want)
}

/// [`compare`], then the published file without the translation is refused.
pub fn check(name: &str, make: Fixture, handler: &str, published_arch: &str, keys: Keys) {
    let (_dir, published, _) = compare(name, make, handler, keys);
    assert_refused_untranslated(&published, published_arch);
}
