//! Images in prompts (issue 29): SmolLM2, a real language model, with a random-weight projector
//! of its width written by the test kit. The projector's weights are noise, so what the model
//! says about a picture means nothing; what is checked is that the picture reaches it: different
//! pictures give different answers, the same picture the same answer, a second turn about it
//! reuses its cells, batching beside another prompt changes nothing, and bad media are refused
//! with the request's error while the engine goes on.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{finish, greedy, options, request, Output};
use corral_engine::{Engine, EngineError, Event, LlamaEngine, Sink};
use corral_testkit::projector::{png, tiny_vision_projector, vision_projector, VisionShape};
use corral_types::runner::{CompletionRequest, LoadOptions, Media};

/// SmolLM2 with a projector of its width (576), two slots.
fn load(dir: &tempfile::TempDir) -> LlamaEngine {
    load_with(dir, tiny_vision_projector(576, 7))
}

/// SmolLM2 with `projector`, two slots.
fn load_with(dir: &tempfile::TempDir, projector_gguf: Vec<u8>) -> LlamaEngine {
    let projector = dir.path().join("projector.gguf");
    std::fs::write(&projector, projector_gguf).unwrap();
    let opts = LoadOptions {
        projector_path: Some(projector.display().to_string()),
        ..options(&corral_testkit::smollm2(), 1024, 2)
    };
    LlamaEngine::load(opts, |_| {}).expect("SmolLM2 loads with the projector")
}

const BEFORE: &str = "<|im_start|>user\n";
const AFTER: &str = "What is in this picture?<|im_end|>\n<|im_start|>assistant\n";

/// A chat turn about `image`, which sits right after the user turn opens.
fn about(image: Vec<u8>) -> CompletionRequest {
    let mut req = request(&format!("{BEFORE}{AFTER}"), greedy(), Some(12));
    req.media = vec![Media { at: BEFORE.len(), data: image }];
    req
}

fn error_of(engine: &dyn Engine, req: CompletionRequest) -> EngineError {
    let generation = engine.complete(req).unwrap();
    for event in generation.events.iter() {
        match event {
            Event::Error(e) => return e,
            Event::Done { .. } => panic!("the request was served"),
            Event::Token { .. } => {}
        }
    }
    panic!("stream ended without an error");
}

#[test]
fn issue_29_an_image_reaches_the_model_and_its_cells_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = load(&dir);
    let text_only = finish(&engine, request(&format!("{BEFORE}{AFTER}"), greedy(), Some(12)));
    let red = finish(&engine, about(png(48, 32, 1)));
    let blue = finish(&engine, about(png(48, 32, 2)));
    assert_ne!(red.text, blue.text, "two pictures, one answer: the image did not reach the model");
    assert_ne!(red.text, text_only.text);
    // The image's tokens are prompt tokens, and none of them reach the protocol as ids.
    assert!(red.usage.prompt_tokens > text_only.usage.prompt_tokens + 4, "{:?} vs {:?}", red.usage, text_only.usage);
    let n_vocab = 49152;
    assert!(red.tokens.iter().all(|t| *t < n_vocab), "{:?}", red.tokens);

    // The same picture again: the same answer, with the picture's cells found in the cache.
    let again = finish(&engine, about(png(48, 32, 2)));
    assert_eq!(again.text, blue.text);
    assert!(
        again.usage.cached_tokens >= blue.usage.prompt_tokens - 20,
        "second turn evaluated the image again: {:?}",
        again.usage
    );
    // A different picture in the same place shares only the text before it.
    let other = finish(&engine, about(png(48, 32, 3)));
    assert!(other.usage.cached_tokens < 10, "{:?}", other.usage);
}

#[test]
fn issue_29_an_image_prompt_batched_beside_a_text_prompt_gives_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = load(&dir);
    let story = || request("Once upon a time, in a small village,", greedy(), Some(24));
    let alone_image = finish(&engine, about(png(40, 40, 5)));
    let alone_text = finish(&engine, story());
    let dir2 = tempfile::tempdir().unwrap();
    let fresh = load(&dir2);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| finish(&fresh, story()));
        let b = s.spawn(|| finish(&fresh, about(png(40, 40, 5))));
        (a.join().unwrap(), b.join().unwrap())
    });
    let same = |x: &Output, y: &Output| x.text == y.text;
    assert!(same(&a, &alone_text), "{:?} vs {:?}", a.text, alone_text.text);
    assert!(same(&b, &alone_image), "{:?} vs {:?}", b.text, alone_image.text);
}

/// Which job each event of two concurrent jobs came from, in the order the engine sent them:
/// `(tag, text)` per token, `(tag, None)` at the end.
#[derive(Clone, Default)]
struct Timeline(Arc<Mutex<Vec<Entry>>>);

type Entry = (char, Option<String>);

struct Tagged(char, Timeline);

impl Sink for Tagged {
    fn event(&mut self, event: Event) -> bool {
        let text = match event {
            Event::Token { text, .. } => Some(text),
            Event::Done { .. } => None,
            Event::Error(e) => panic!("job {} failed: {e}", self.0),
        };
        self.1 .0.lock().unwrap().push((self.0, text));
        true
    }
}

impl Timeline {
    fn events(&self) -> Vec<Entry> {
        self.0.lock().unwrap().clone()
    }

    fn text(&self, tag: char) -> String {
        self.events().into_iter().filter(|(t, _)| *t == tag).filter_map(|(_, text)| text).collect()
    }

    /// Waits until every job in `tags` has ended.
    fn wait_done(&self, tags: &[char]) {
        let until = Instant::now() + Duration::from_secs(300);
        while !tags.iter().all(|tag| self.events().contains(&(*tag, None))) {
            assert!(Instant::now() < until, "the jobs did not end: {:?}", self.events());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A picture of 144 image tokens: with a stream decoding, it goes in a prompt chunk's share (16
/// rows at num_batch 64) per step, so it takes at least 9 steps.
const PIECES: usize = 144 / 16;

/// A stream of `predict` tokens started (two of its events in) on a fresh engine whose projector
/// makes [`PIECES`] pieces of a picture, and what picture `seed` gives alone on another engine (so
/// that the picture is in no slot's cache).
struct BesideAStream {
    alone: Output,
    engine: LlamaEngine,
    timeline: Timeline,
    _stream: corral_engine::CancelOnDrop,
    _dirs: [tempfile::TempDir; 2],
}

fn beside_a_stream(seed: u64, predict: u32) -> BesideAStream {
    let shape = VisionShape { image_size: 192, ..VisionShape::TINY };
    assert_eq!(shape.image_tokens() as usize, PIECES * 16);
    let projector = vision_projector(&shape, 576, 7);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let alone = finish(&load_with(&dirs[0], projector.clone()), about(png(40, 40, seed)));
    let engine = load_with(&dirs[1], projector);
    let timeline = Timeline::default();
    let story = request("Once upon a time, in a small village,", greedy(), Some(predict));
    let stream = engine.complete_into(story, Box::new(Tagged('s', timeline.clone()))).unwrap();
    while timeline.events().len() < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    BesideAStream { alone, engine, timeline, _stream: stream, _dirs: dirs }
}

#[test]
fn issue_29_a_stream_keeps_decoding_while_another_prompts_picture_goes_in() {
    // The stream gets a token at each of the picture's steps; decoded in one go (as `mtmd`'s
    // helper does), the picture would take one.
    let BesideAStream { alone, engine, timeline, _stream, _dirs } = beside_a_stream(5, 200);
    let asked = timeline.events().len();
    let _picture = engine.complete_into(about(png(40, 40, 5)), Box::new(Tagged('p', timeline.clone()))).unwrap();
    timeline.wait_done(&['s', 'p']);

    let events = timeline.events();
    let first = events.iter().position(|(t, _)| *t == 'p').unwrap();
    let meanwhile = events[asked..first].iter().filter(|(t, _)| *t == 's').count();
    assert!(
        meanwhile >= PIECES,
        "the stream got {meanwhile} tokens while the picture went in, fewer than its {PIECES} pieces"
    );
    // Cut into pieces or not, the picture's rows went in whole and in order: the answer is the
    // one it gives alone, token for token.
    assert_eq!(timeline.text('p'), alone.text);
}

#[test]
fn issue_29_a_picture_cancelled_while_it_goes_in_leaves_nothing_behind() {
    let BesideAStream { alone, engine, timeline, _stream, _dirs } = beside_a_stream(8, 60);
    // Cancelled a few steps in: while it is encoded or its first pieces are in (it takes nine).
    let picture = engine.complete_into(about(png(40, 40, 8)), Box::new(Tagged('p', timeline.clone()))).unwrap();
    let asked = timeline.events().len();
    while timeline.events().len() < asked + 3 {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(picture);
    timeline.wait_done(&['s']);
    assert_eq!(timeline.text('p'), "", "the cancelled picture was answered");

    // Its half-decoded rows are not taken for a cached picture: asked again, it answers as alone.
    let again = finish(&engine, about(png(40, 40, 8)));
    assert_eq!(again.text, alone.text);
    assert!(again.usage.cached_tokens < 10, "{:?}", again.usage);
}

#[test]
fn issue_29_bad_media_are_refused_and_the_engine_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let engine = load(&dir);
    // Not an image at all.
    let mut req = about(b"this is not a picture".to_vec());
    let e = error_of(&engine, req.clone());
    assert!(matches!(e, EngineError::Request(ref m) if m.contains("media 0 (21 bytes) could not be read")), "{e:?}");
    // A PNG cut short.
    let mut cut = png(48, 32, 1);
    cut.truncate(cut.len() / 2);
    req.media[0].data = cut;
    assert!(matches!(error_of(&engine, req.clone()), EngineError::Request(_)));
    // An offset inside a character or past the end.
    req.media[0] = Media { at: 10_000, data: png(8, 8, 1) };
    let e = error_of(&engine, req.clone());
    assert!(matches!(e, EngineError::Request(ref m) if m.contains("byte 10000")), "{e:?}");
    // A prompt that ends with its image has no text to answer from.
    req.media[0] = Media { at: req.prompt.len(), data: png(8, 8, 1) };
    let e = error_of(&engine, req);
    assert!(matches!(e, EngineError::Request(ref m) if m.contains("ends with an image")), "{e:?}");
    // Still serving.
    let ok = finish(&engine, about(png(16, 16, 4)));
    assert!(!ok.text.is_empty());
}

#[test]
fn issue_29_a_model_without_a_projector_refuses_images() {
    let engine = LlamaEngine::load(options(&corral_testkit::smollm2(), 512, 1), |_| {}).unwrap();
    let e = error_of(&engine, about(png(8, 8, 1)));
    assert!(matches!(e, EngineError::Request(ref m) if m.contains("does not take images")), "{e:?}");
}

#[test]
fn issue_29_a_projector_of_another_width_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let projector: PathBuf = dir.path().join("wide.gguf");
    std::fs::write(&projector, tiny_vision_projector(896, 7)).unwrap();
    let opts = LoadOptions {
        projector_path: Some(projector.display().to_string()),
        ..options(&corral_testkit::smollm2(), 512, 1)
    };
    let e = LlamaEngine::load(opts, |_| {}).err().expect("a 896-wide projector on a 576-wide model");
    assert!(e.to_string().contains("projector"), "{e}");
}

#[test]
fn issue_29_sound_reaches_the_model_through_an_audio_projector() {
    use corral_testkit::audio::{tiny_audio_projector, wav, SAMPLE_RATE, TOKENS_PER_WINDOW};
    let dir = tempfile::tempdir().unwrap();
    let projector = dir.path().join("audio.gguf");
    std::fs::write(&projector, tiny_audio_projector(576, 3)).unwrap();
    let opts = LoadOptions {
        projector_path: Some(projector.display().to_string()),
        ..options(&corral_testkit::smollm2(), 1024, 1)
    };
    let engine = LlamaEngine::load(opts, |_| {}).expect("SmolLM2 loads with the audio projector");
    let hear = |seed| {
        let mut req = request(
            &format!("{BEFORE}What is said in this recording?<|im_end|>\n<|im_start|>assistant\n"),
            greedy(),
            Some(12),
        );
        req.media = vec![Media { at: BEFORE.len(), data: wav(25.0, SAMPLE_RATE, seed) }];
        finish(&engine, req)
    };
    let (one, two, again) = (hear(1), hear(2), hear(1));
    assert_ne!(one.text, two.text, "two recordings, one answer: the sound did not reach the model");
    assert_eq!(again.text, one.text);
    // Under 30 s of sound is one window of the encoder's.
    assert!(one.usage.prompt_tokens as u64 >= TOKENS_PER_WINDOW, "{:?}", one.usage);
    // A picture sent to a model that only hears is refused.
    let e = error_of(&engine, about(png(8, 8, 1)));
    assert!(matches!(e, EngineError::Request(ref m) if m.contains("does not take images")), "{e:?}");
}

/// Issue 29: a Gemma 3 file as Ollama published it (vision tower inside) is loaded as its own
/// projector, translated to what llama.cpp's projector loader expects, and computes exactly what
/// the same weights do in llama.cpp's layout: the text model as llama.cpp converts it and the
/// tower as a separate projector file (patch and position embeddings in F32, which the published
/// file stores in F16 and the translation converts as it loads them).
#[test]
fn issue_29_a_published_gemma3_serves_as_its_own_projector() {
    let dir = tempfile::tempdir().unwrap();
    let published = dir.path().join("published.gguf");
    std::fs::write(&published, corral_testkit::gemma3_as_published(&corral_testkit::gemma3())).unwrap();
    let reference = dir.path().join("mmproj.gguf");
    std::fs::write(&reference, corral_testkit::gemma3_reference_projector(640)).unwrap();
    let load = |model: &std::path::Path, projector: &std::path::Path| {
        let opts = LoadOptions { projector_path: Some(projector.display().to_string()), ..options(model, 1024, 1) };
        LlamaEngine::load(opts, |_| {}).unwrap_or_else(|e| panic!("{}: {e}", model.display()))
    };
    let ours = load(&published, &published);
    let theirs = load(&corral_testkit::gemma3(), &reference);
    const TURN: &str = "<start_of_turn>user\n";
    let ask = |engine: &LlamaEngine, seed| {
        let mut req =
            request(&format!("{TURN}Describe the picture.<end_of_turn>\n<start_of_turn>model\n"), greedy(), Some(16));
        req.media = vec![Media { at: TURN.len(), data: png(96, 80, seed) }];
        finish(engine, req)
    };
    let (a1, b1) = (ask(&ours, 1), ask(&theirs, 1));
    let (a2, b2) = (ask(&ours, 2), ask(&theirs, 2));
    assert_eq!(a1.text, b1.text);
    assert_eq!(a2.text, b2.text);
    assert_eq!(a1.usage.prompt_tokens, b1.usage.prompt_tokens);
    assert_ne!(a1.text, a2.text, "two pictures, one answer: the image did not reach the model");
}
