//! Writes the random projector and a test picture, for trying them with llama.cpp's
//! `llama-mtmd-cli`:
//! `tiny-projector --embd 576 --out proj.gguf --png img.png --width W --height H --seed S`.
//! `--out` and `--png` are each optional; the seed drives both files (default 1). `--shape vit-b16`
//! writes a projector of CLIP ViT-B/16's size instead of the tiny one (for benches).

use corral_testkit::projector::{png, vision_projector, VisionShape};

fn main() {
    const USAGE: &str = "usage: tiny-projector [--embd N] [--out PROJ.gguf] [--png IMG.png] [--width W] \
                         [--height H] [--seed S] [--shape tiny|vit-b16]";
    let (mut embd, mut out, mut image, mut width, mut height, mut seed) = (576u64, None, None, 64u32, 64u32, 1u64);
    let mut shape = VisionShape::TINY;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value; {USAGE}"));
        let number = |v: &str| v.parse::<u64>().unwrap_or_else(|_| panic!("{flag}: {v} is not a number"));
        match flag.as_str() {
            "--embd" => embd = number(&value),
            "--out" => out = Some(value),
            "--png" => image = Some(value),
            "--width" => width = number(&value) as u32,
            "--height" => height = number(&value) as u32,
            "--seed" => seed = number(&value),
            "--shape" if value == "tiny" => shape = VisionShape::TINY,
            "--shape" if value == "vit-b16" => shape = VisionShape::VIT_B16,
            _ => panic!("unknown flag {flag}; {USAGE}"),
        }
    }
    assert!(out.is_some() || image.is_some(), "nothing to write; {USAGE}");
    if let Some(path) = out {
        std::fs::write(&path, vision_projector(&shape, embd, seed)).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    if let Some(path) = image {
        std::fs::write(&path, png(width, height, seed)).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
}
