//! Writes the random audio projector and a test sound, for trying them with llama.cpp's
//! `llama-mtmd-cli`:
//! `tiny-audio --embd 576 --out audio.gguf --wav sound.wav --seconds S --rate R --seed S`.
//! `--out` and `--wav` are each optional; the seed drives both files (default 1). The sound is
//! 3 seconds at 16 kHz unless told otherwise.

use corral_testkit::audio::{tiny_audio_projector, wav, SAMPLE_RATE};

fn main() {
    const USAGE: &str = "usage: tiny-audio [--embd N] [--out PROJ.gguf] [--wav SOUND.wav] [--seconds S] \
                         [--rate HZ] [--seed S]";
    let (mut embd, mut out, mut sound, mut seconds, mut rate, mut seed) =
        (576u64, None, None, 3.0f32, SAMPLE_RATE, 1u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value; {USAGE}"));
        let number = |v: &str| v.parse::<u64>().unwrap_or_else(|_| panic!("{flag}: {v} is not a number"));
        match flag.as_str() {
            "--embd" => embd = number(&value),
            "--out" => out = Some(value),
            "--wav" => sound = Some(value),
            "--seconds" => seconds = value.parse().unwrap_or_else(|_| panic!("--seconds: {value} is not a number")),
            "--rate" => rate = number(&value) as u32,
            "--seed" => seed = number(&value),
            _ => panic!("unknown flag {flag}; {USAGE}"),
        }
    }
    assert!(out.is_some() || sound.is_some(), "nothing to write; {USAGE}");
    if let Some(path) = out {
        std::fs::write(&path, tiny_audio_projector(embd, seed)).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    if let Some(path) = sound {
        std::fs::write(&path, wav(seconds, rate, seed)).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
}
