//! Pictures answered as llama.cpp itself answers them (issue 29): the engine's greedy answers are
//! compared token for token with llama.cpp's own way of running the same prompt in the same
//! process (its `mtmd` helper evaluating the whole prompt, then greedy decoding), for the models
//! where Corral does more than hand the prompt over:
//!
//! - multi-axis RoPE (a Qwen2-VL-family language model and a Qwen2-VL projector, random weights
//!   from the test kit): a picture of 4×4 tokens takes only 4 positions, so the text after it sits
//!   at other positions than its token index. A wrong position anywhere (after a picture, after a
//!   reused prefix, in a batch shared with another prompt) changes the answer;
//! - the files Ollama published with the vision tower inside (Qwen2.5-VL, Qwen3-VL, Mistral 3,
//!   Llama 4, Gemma 4; Gemma 4's audio tower too),
//!   served as their own projector through the compatibility layer's projector translation,
//!   against llama.cpp's layout of the same weights (text model and projector apart).

mod common;

use std::ffi::CString;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use common::{finish, greedy, options, request, Output};
use corral_engine::LlamaEngine;
use corral_testkit::projector::png;
use corral_testkit::projector_qwen::{tiny_qwen2vl_projector, IMAGE_N_POS, IMAGE_SIZE, IMAGE_TOKENS};
use corral_testkit::Layout;
use corral_types::runner::{CompletionRequest, LoadOptions, Media};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::{mtmd_default_marker, MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputText};
use llama_cpp_2::token::LlamaToken;

const STEPS: u32 = 12;
const CTX: u32 = 1024;
const BATCH: u32 = 64;

/// The language model (width 128) and its projector, written under `dir`.
fn write_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let tokenizer = corral_gguf::read_path(&corral_testkit::smollm2()).expect("SmolLM2's header parses");
    let model = dir.join("qwen2vl.gguf");
    let projector = dir.join("qwen2vl-mmproj.gguf");
    std::fs::write(&model, corral_testkit::tiny_qwen25vl(Layout::LlamaCpp, &tokenizer, 5)).unwrap();
    std::fs::write(&projector, tiny_qwen2vl_projector(128, 9)).unwrap();
    (model, projector)
}

fn load(model: &Path, projector: &Path, parallel: u32) -> LlamaEngine {
    let opts = LoadOptions { projector_path: Some(projector.display().to_string()), ..options(model, CTX, parallel) };
    LlamaEngine::load(opts, |_| {}).expect("the Qwen2-VL pair loads")
}

/// A prompt: text pieces with a picture between each two.
struct Prompt {
    pieces: Vec<&'static str>,
    pictures: Vec<Vec<u8>>,
}

impl Prompt {
    fn request(&self) -> CompletionRequest {
        let mut req = request(&self.pieces.concat(), greedy(), Some(STEPS));
        let mut at = 0;
        for (piece, data) in self.pieces.iter().zip(&self.pictures) {
            at += piece.len();
            req.media.push(Media { at, data: data.clone() });
        }
        req
    }

    fn with_markers(&self) -> String {
        self.pieces.join(mtmd_default_marker())
    }
}

fn picture(seed: u64) -> Vec<u8> {
    png(IMAGE_SIZE, IMAGE_SIZE, seed)
}

/// The answer's token ids.
fn answer(out: &Output) -> Vec<u32> {
    out.tokens[out.tokens.len() - out.usage.generated_tokens as usize..].to_vec()
}

/// What llama.cpp itself answers: `mtmd` tokenizes and evaluates the whole prompt (positions
/// and all), then tokens are chosen greedily one at a time.
fn reference(model_path: &Path, projector: &Path, prompt: &Prompt) -> Vec<u32> {
    let backend = corral_engine::llama_backend().unwrap();
    let model = LlamaModel::load_from_file(backend, model_path, &LlamaModelParams::default()).unwrap();
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(CTX))
        .with_n_batch(BATCH)
        .with_n_ubatch(BATCH)
        .with_n_threads(1)
        .with_n_threads_batch(1);
    let mut ctx = model.new_context(backend, params).unwrap();
    let mparams = MtmdContextParams {
        use_gpu: false,
        print_timings: false,
        n_threads: 1,
        media_marker: CString::new(mtmd_default_marker()).unwrap(),
        image_min_tokens: -1,
        image_max_tokens: -1,
    };
    let mut mtmd = MtmdContext::init_from_file(projector.to_str().unwrap(), &model, &mparams).unwrap();
    let bitmaps: Vec<MtmdBitmap> =
        prompt.pictures.iter().map(|d| MtmdBitmap::from_buffer(&mtmd, d, false).unwrap()).collect();
    let text = MtmdInputText { text: prompt.with_markers(), add_special: true, parse_special: true };
    let chunks = mtmd.tokenize(text, &bitmaps.iter().collect::<Vec<_>>()).unwrap();
    let after_prompt = chunks.eval_chunks(&mut mtmd, &mut ctx, 0, 0, BATCH as i32, true).unwrap();
    let mut out = Vec::new();
    let mut batch = LlamaBatch::new(1, 1);
    for n_past in (after_prompt..).take(STEPS as usize) {
        let token = corral_engine_argmax(ctx.get_logits_ith(-1));
        out.push(token as u32);
        batch.clear();
        batch.add(LlamaToken(token as i32), n_past, &[0], true).unwrap();
        ctx.decode(&mut batch).unwrap();
    }
    out
}

/// The first largest logit's index, as the engine's greedy choice takes it.
fn corral_engine_argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best
}

const OPEN: &str = "<|im_start|>user\n";
const ASK: &str = "What is in this picture?<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn issue_29_an_m_rope_picture_answers_as_llama_cpp_does() {
    let dir = tempfile::tempdir().unwrap();
    let (model, projector) = write_pair(dir.path());
    let engine = load(&model, &projector, 1);
    let one = Prompt { pieces: vec![OPEN, ASK], pictures: vec![picture(1)] };
    let got = finish(&engine, one.request());
    assert_eq!(answer(&got), reference(&model, &projector, &one), "{:?}", got.text);
    // The picture's 16 tokens are counted, though they take 4 positions.
    let text_only = finish(&engine, request(&one.pieces.concat(), greedy(), Some(STEPS)));
    assert!(got.usage.prompt_tokens >= text_only.usage.prompt_tokens + IMAGE_TOKENS, "{:?}", got.usage);
    const { assert!(IMAGE_N_POS < IMAGE_TOKENS) };

    // Two pictures: the text after the second is two pictures' savings from its index.
    let two = Prompt {
        pieces: vec![OPEN, "Compare this one", "with this one.<|im_end|>\n<|im_start|>assistant\n"],
        pictures: vec![picture(2), picture(3)],
    };
    let got = finish(&engine, two.request());
    assert_eq!(answer(&got), reference(&model, &projector, &two), "{:?}", got.text);
}

#[test]
fn issue_29_an_m_rope_picture_reused_from_the_cache_answers_as_llama_cpp_does() {
    let dir = tempfile::tempdir().unwrap();
    let (model, projector) = write_pair(dir.path());
    let engine = load(&model, &projector, 1);
    // The first turn leaves the picture in the slot's cells; the second reuses them and its new
    // text must continue from the picture's positions, not its tokens'.
    let first = Prompt { pieces: vec![OPEN, ASK], pictures: vec![picture(4)] };
    finish(&engine, first.request());
    let second = Prompt {
        pieces: vec![OPEN, "Describe the colours in this picture, please.<|im_end|>\n<|im_start|>assistant\n"],
        pictures: vec![picture(4)],
    };
    let got = finish(&engine, second.request());
    assert!(got.usage.cached_tokens >= IMAGE_TOKENS, "the picture was not reused: {:?}", got.usage);
    assert_eq!(answer(&got), reference(&model, &projector, &second), "{:?}", got.text);
}

#[test]
fn issue_29_an_m_rope_picture_batched_beside_a_text_prompt_answers_as_llama_cpp_does() {
    let dir = tempfile::tempdir().unwrap();
    let (model, projector) = write_pair(dir.path());
    let engine = load(&model, &projector, 2);
    let one = Prompt { pieces: vec![OPEN, ASK], pictures: vec![picture(6)] };
    let story = || request("Once upon a time, in a small village,", greedy(), Some(24));
    let alone = finish(&engine, story());
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| finish(&engine, story()));
        let b = s.spawn(|| finish(&engine, one.request()));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.text, alone.text);
    assert_eq!(answer(&b), reference(&model, &projector, &one), "{:?}", b.text);
}

/// A published fixture (text model and tower in one file) in both layouts, with the reference
/// projector of the tower: `(published, llama.cpp's text model, llama.cpp's projector)`.
fn write_published(dir: &Path, name: &str, make: common::compat::Fixture, projector: Vec<u8>) -> [PathBuf; 3] {
    let tokenizer = corral_gguf::read_path(&corral_testkit::smollm2()).unwrap();
    let paths = [format!("sha256-{name}-published"), format!("{name}-text.gguf"), format!("{name}-mmproj.gguf")]
        .map(|f| dir.join(f));
    std::fs::write(&paths[0], make(Layout::Published, &tokenizer, 11)).unwrap();
    std::fs::write(&paths[1], make(Layout::LlamaCpp, &tokenizer, 11)).unwrap();
    std::fs::write(&paths[2], projector).unwrap();
    paths
}

/// Ollama's file holds the text model and the tower; llama.cpp's converter writes the two apart.
/// Served as its own projector, the published file must give llama.cpp's answers from the
/// llama.cpp-layout pair, for every picture of `sizes` (`(width, height)`, with seeds 1, 2…),
/// placed after `open`.
fn assert_published_answers_as_llama_cpp(paths: &[PathBuf; 3], open: &'static str, sizes: &[(u32, u32)]) {
    let pictures = (1..).zip(sizes).map(|(seed, &(w, h))| png(w, h, seed)).collect();
    assert_published_media_answer_as_llama_cpp(paths, open, pictures);
}

/// [`assert_published_answers_as_llama_cpp`] for any `media` (pictures or sounds), the first
/// two of which differ.
fn assert_published_media_answer_as_llama_cpp(paths: &[PathBuf; 3], open: &'static str, media: Vec<Vec<u8>>) {
    let [published, text, mmproj] = paths;
    let ours = load(published, published, 1);
    let mut answers = Vec::new();
    for (i, medium) in media.into_iter().enumerate() {
        let ask = Prompt { pieces: vec![open, ASK], pictures: vec![medium] };
        let got = finish(&ours, ask.request());
        assert_eq!(answer(&got), reference(text, mmproj, &ask), "medium {i}: {:?}", got.text);
        answers.push(got.text);
    }
    assert_ne!(answers[0], answers[1], "two media, one answer: the medium did not reach the model");
}

#[test]
fn issue_29_a_published_qwen25vl_serves_as_its_own_projector_and_answers_as_llama_cpp_does() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_published(
        dir.path(),
        "qwen25vl",
        corral_testkit::tiny_qwen25vl,
        corral_testkit::qwen25vl_reference_projector(128),
    );
    // 224×112 pixels: two of the tower's 112-pixel attention windows.
    assert_published_answers_as_llama_cpp(&paths, OPEN, &[(224, 112), (224, 112)]);
}

#[test]
fn issue_29_a_published_qwen3vl_serves_as_its_own_projector_and_answers_as_llama_cpp_does() {
    // Deepstack features, a learned position grid resized to the picture, the two frames' patch
    // kernels cut out of one tensor and Q/K/V fused back together at load.
    let dir = tempfile::tempdir().unwrap();
    for (name, make, embd) in [
        ("qwen3vl", corral_testkit::tiny_qwen3vl as common::compat::Fixture, 256),
        ("qwen3vlmoe", corral_testkit::tiny_qwen3vlmoe, 128),
    ] {
        let paths = write_published(dir.path(), name, make, corral_testkit::qwen3vl_reference_projector(embd));
        assert_published_answers_as_llama_cpp(&paths, OPEN, &[(64, 32), (64, 32), (48, 48)]);
    }
}

#[test]
fn issue_29_a_published_mistral3_serves_as_its_own_projector_and_answers_as_llama_cpp_does() {
    // Pixtral's Q/K rows reordered for llama.cpp's 2-D RoPE, and the [IMG_BREAK] embedding taken
    // from the text model's (quantized) token embedding, both at load.
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = corral_gguf::read_path(&corral_testkit::smollm2()).unwrap();
    let text = corral_testkit::tiny_mistral3(Layout::LlamaCpp, &tokenizer, 11);
    let projector = corral_testkit::mistral3_reference_projector(&text);
    let paths = write_published(dir.path(), "mistral3", corral_testkit::tiny_mistral3, projector);
    // 112×84 pixels: 4×3 image tokens with a row break after each of the first two rows.
    assert_published_answers_as_llama_cpp(&paths, OPEN, &[(112, 84), (112, 84), (168, 112)]);
}

#[test]
fn issue_29_a_published_llama4_serves_as_its_own_projector_and_answers_as_llama_cpp_does() {
    // One 56-pixel tile, then a picture cut into tiles plus an overview.
    let dir = tempfile::tempdir().unwrap();
    let projector = corral_testkit::llama4_reference_projector(64);
    let paths = write_published(dir.path(), "llama4", corral_testkit::tiny_llama4, projector);
    assert_published_answers_as_llama_cpp(&paths, OPEN, &[(56, 56), (56, 56), (150, 100), (150, 100)]);
}

#[test]
fn issue_29_a_published_gemma4_serves_as_its_own_projector_and_answers_as_llama_cpp_does() {
    let dir = tempfile::tempdir().unwrap();
    let projector = corral_testkit::gemma4_reference_projector(64);
    let paths = write_published(dir.path(), "gemma4", corral_testkit::tiny_gemma4, projector);
    // llama.cpp gives every gemma4 prompt a BOS, and the test kit's tokenizer (SmolLM2's) has
    // `<|im_start|>` as its BOS: the engine would drop the second of two BOS tokens, `mtmd` not.
    assert_published_answers_as_llama_cpp(&paths, "User: ", &[(64, 48), (64, 48)]);
    // Its audio tower is a second projector of the same file: sounds of one and two seconds.
    let sounds =
        [(1.0, 1), (1.0, 2), (2.0, 3)].map(|(seconds, seed)| corral_testkit::audio::wav(seconds, 16_000, seed));
    assert_published_media_answer_as_llama_cpp(&paths, "User: ", sounds.to_vec());
}
