//! Writes random-weight projectors and test media, for trying them with llama.cpp's
//! `llama-mtmd-cli` and for the benches:
//!
//! `tiny-media [--projector tiny|vit-b16|audio] [--embd N] [--out PROJ.gguf] [--png IMG.png]
//! [--width W] [--height H] [--wav SOUND.wav] [--seconds S] [--rate HZ] [--reranker RANK.gguf]
//! [--xlmr DIR] [--seed S]`
//!
//! `--projector` picks the test kit's tiny vision projector (the default), one of CLIP
//! ViT-B/16's size, or the tiny audio projector; `--out`, `--png`, `--wav`, `--reranker` (the
//! BERT cross-encoder GGUF) and `--xlmr` (an XLM-RoBERTa cross-encoder as a Hugging Face
//! directory) are each optional, and the seed (default 1) drives every file written. Pictures are
//! 64×64 and sounds 3 s at 16 kHz unless told otherwise.

use corral_testkit::audio::{tiny_audio_projector, wav, SAMPLE_RATE};
use corral_testkit::projector::{png, vision_projector, VisionShape};

const USAGE: &str = "usage: tiny-media [--projector tiny|vit-b16|audio] [--embd N] [--out PROJ.gguf] \
                     [--png IMG.png] [--width W] [--height H] [--wav SOUND.wav] [--seconds S] [--rate HZ] \
                     [--reranker RANK.gguf] [--xlmr DIR] [--seed S]";

fn main() {
    let mut flags = std::collections::HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let known = [
            "--projector",
            "--embd",
            "--out",
            "--png",
            "--width",
            "--height",
            "--wav",
            "--seconds",
            "--rate",
            "--reranker",
            "--xlmr",
        ];
        if !known.contains(&flag.as_str()) && flag != "--seed" {
            panic!("unknown flag {flag}; {USAGE}");
        }
        let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value; {USAGE}"));
        flags.insert(flag, value);
    }
    let number = |flag: &str, default: f64| -> f64 {
        flags.get(flag).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{flag}: {v} is not a number")))
    };
    let seed = number("--seed", 1.0) as u64;
    let write =
        |path: &String, bytes: Vec<u8>| std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {path}: {e}"));
    if let Some(path) = flags.get("--out") {
        let embd = number("--embd", 576.0) as u64;
        let bytes = match flags.get("--projector").map_or("tiny", String::as_str) {
            "tiny" => vision_projector(&VisionShape::TINY, embd, seed),
            "vit-b16" => vision_projector(&VisionShape::VIT_B16, embd, seed),
            "audio" => tiny_audio_projector(embd, seed),
            other => panic!("unknown projector {other}; {USAGE}"),
        };
        write(path, bytes);
    }
    if let Some(path) = flags.get("--png") {
        write(path, png(number("--width", 64.0) as u32, number("--height", 64.0) as u32, seed));
    }
    if let Some(path) = flags.get("--wav") {
        write(path, wav(number("--seconds", 3.0) as f32, number("--rate", f64::from(SAMPLE_RATE)) as u32, seed));
    }
    if let Some(path) = flags.get("--reranker") {
        write(path, corral_testkit::reranker::tiny_reranker(seed));
    }
    if let Some(dir) = flags.get("--xlmr") {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {dir}: {e}"));
        corral_testkit::xlmr::tiny_xlmr_cross_encoder(std::path::Path::new(dir), seed);
    }
    assert!(
        ["--out", "--png", "--wav", "--reranker", "--xlmr"].iter().any(|f| flags.contains_key(*f)),
        "nothing to write; {USAGE}"
    );
}
