//! Architectures with random weights, written in llama.cpp's layout and in the one Ollama
//! published them in (gpt-oss, LFM2, Mistral 3, Qwen3-VL, Llama 3's tokenizer metadata): the
//! translation turns the published header into the reference's, the two files then compute the
//! same answer, and without the translation the published one does not load (or, for Llama 3,
//! loads and reads prompts differently).

mod common;

use common::compat::{answer_of, check, compare, Keys, PROMPT};
use common::options;
use corral_engine::{Engine, LlamaEngine};
use corral_gguf::MetaValue;
use corral_testkit::Layout;

#[test]
fn published_gpt_oss_answers_as_the_llama_cpp_layout_does() {
    check("gpt-oss", corral_testkit::tiny_gpt_oss, "gptoss", "gptoss", Keys::Equal);
}

#[test]
fn published_lfm2_answers_as_the_llama_cpp_layout_does() {
    check("lfm2", corral_testkit::tiny_lfm2, "lfm2", "lfm2", Keys::Equal);
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

#[test]
fn published_mistral3_answers_as_the_llama_cpp_layout_does() {
    // The YaRN and temperature keys are copied, so Ollama's names stay behind.
    check("mistral3", corral_testkit::tiny_mistral3, "mistral3", "mistral3", Keys::Superset);
}

#[test]
fn published_qwen3vl_answers_as_the_llama_cpp_layout_does() {
    // The vision keys stay behind.
    check("qwen3vl", corral_testkit::tiny_qwen3vl, "qwen3vl", "qwen3vl", Keys::Superset);
}

/// `<|begin_of_text|>` in a Llama 3 vocabulary.
const BEGIN_OF_TEXT: u32 = 128_000;

/// The published Llama 3 differs only in tokenizer metadata, so it loads without the translation
/// too; but then no pre-tokenizer is named, llama.cpp falls back to its default one, which does
/// not add `<|begin_of_text|>`, and the same prompt gets another answer.
#[test]
fn published_llama3_answers_as_the_llama_cpp_layout_does() {
    let (_dir, published, want) = compare("llama3", corral_testkit::tiny_llama3, "llama3", Keys::Equal);
    assert_eq!(want.tokens.first(), Some(&BEGIN_OF_TEXT), "llama-bpe adds BOS: {:?}", want.tokens);

    let opts = corral_types::runner::LoadOptions { no_compat: true, ..options(&published, 512, 1) };
    let untranslated = LlamaEngine::load(opts, |_| {}).expect("only metadata differs: the file loads");
    assert!(!untranslated.info().add_bos);
    assert_ne!(untranslated.tokenize(PROMPT).unwrap().first(), Some(&BEGIN_OF_TEXT));
    let got = answer_of(&untranslated);
    assert_ne!(got.tokens, want.tokens);
}

/// GLM-OCR: llama.cpp's fused `ffn_up` is assembled at load from Ollama's separate gate and up
/// (the file is read, not mapped), and answers as the reference does.
#[test]
fn published_glmocr_answers_as_the_llama_cpp_layout_does() {
    check("glmocr", corral_testkit::tiny_glmocr, "glmocr", "glmocr", Keys::Equal);
}
