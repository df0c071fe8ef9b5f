//! Published layouts of OLMo 3, Llama 4, GLM-4.7 Flash, Nemotron-H MoE with latent experts (and
//! as the unified text, vision and audio Nemotron), Laguna, LFM2-MoE and DeepSeek-OCR: the
//! translation turns each published header into the reference's, both files then give the same
//! answer to the last bit, and without the translation the published file does not load.

mod common;

use common::assert_same_answers;
use common::compat::{
    answer, assert_refused_untranslated, check, sorted_keys, sorted_tensors, write_both, Keys, STEPS,
};

#[test]
fn published_olmo3_answers_as_the_llama_cpp_layout_does() {
    // Every key moves from `olmo3.` to `olmo2.`: nothing of Ollama's stays behind.
    check("olmo3", corral_testkit::tiny_olmo3, "olmo3", "olmo3", Keys::Equal);
}

#[test]
fn published_llama4_answers_as_the_llama_cpp_layout_does() {
    // Only the vision tensors are hidden; the vision keys stay behind, unread.
    check("llama4", corral_testkit::tiny_llama4, "llama4", "llama4", Keys::Superset);
}

#[test]
fn published_glm4moelite_answers_as_the_llama_cpp_layout_does() {
    check("glm4moelite", corral_testkit::tiny_glm4moelite, "glm4moelite", "glm4moelite", Keys::Equal);
}

#[test]
fn published_nemotron_h_moe_answers_as_the_llama_cpp_layout_does() {
    check("nemotron-h-moe", corral_testkit::tiny_nemotron_h_moe, "nemotron_h_moe", "nemotron_h_moe", Keys::Equal);
}

/// The unified Nemotron (`nemotron_h_omni`) is its text model plus media encoders: the
/// translation selects the text architecture and hides the rest.
fn nemotron_omni(layout: corral_testkit::Layout, tokenizer: &corral_gguf::Gguf, seed: u64) -> Vec<u8> {
    let text = corral_testkit::tiny_nemotron_h_moe(corral_testkit::Layout::LlamaCpp, tokenizer, seed);
    match layout {
        corral_testkit::Layout::LlamaCpp => text,
        corral_testkit::Layout::Published => corral_testkit::as_nemotron_omni(&text),
    }
}

#[test]
fn published_nemotron_omni_answers_as_its_text_model_does() {
    check("nemotron-omni", nemotron_omni, "nemotron_h_omni", "nemotron_h_omni", Keys::Equal);
}

#[test]
fn published_laguna_answers_as_the_llama_cpp_layout_does() {
    // The RoPE keys are copied, and the keys of Ollama's own engine stay behind, unread.
    check("laguna", corral_testkit::tiny_laguna, "laguna", "laguna", Keys::Superset);
}

#[test]
fn published_lfm2moe_answers_as_the_llama_cpp_layout_does() {
    // LFM2's fixes: the last norm renamed, the pre-tokenizer and the dense width set.
    check("lfm2moe", corral_testkit::tiny_lfm2moe, "lfm2moe", "lfm2moe", Keys::Equal);
}

/// Published DeepSeek-OCR: every `deepseekocr.` key moves to `deepseek2-ocr.`, the vision and SAM
/// keys too, which llama.cpp's own text file does not have and does not read. Apart from them the
/// translated header is the reference's, and the answers are the same.
#[test]
fn published_deepseekocr_answers_as_the_llama_cpp_layout_does() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, published) = write_both(dir.path(), "deepseekocr", corral_testkit::tiny_deepseekocr);
    let want = corral_gguf::read_path(&reference).unwrap();
    let header = corral_gguf::read_path(&published).unwrap();
    assert_eq!(corral_compat::translate(&want).unwrap(), None);
    let translation = corral_compat::translate(&header).unwrap().expect("the published layout is recognised");
    assert_eq!(translation.handler, "deepseekocr");
    let seen = translation.apply(&header);
    let media =
        |(k, _): &(String, String)| k.starts_with("deepseek2-ocr.vision.") || k.starts_with("deepseek2-ocr.sam.");
    let seen_keys: Vec<_> = sorted_keys(&seen).into_iter().filter(|k| !media(k)).collect();
    assert_eq!(seen_keys, sorted_keys(&want));
    assert_eq!(sorted_tensors(&seen), sorted_tensors(&want));
    assert!(translation.hidden.iter().any(|t| t.starts_with("s.")), "{:?}", translation.hidden);

    let reference_answer = answer(&reference);
    assert_eq!(reference_answer.logprobs.len(), STEPS);
    assert_same_answers(&reference_answer, &answer(&published), 0.0);
    assert_refused_untranslated(&published, "deepseekocr");
}
