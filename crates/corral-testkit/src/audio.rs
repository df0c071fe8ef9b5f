//! A random-weight audio projector (an "mmproj" GGUF with an audio encoder) and sounds to feed it.
//!
//! The audio counterpart of [`crate::projector`]: no real audio weights are available to the
//! tests, yet the audio path of the server (loading a projector next to a language model,
//! decoding a WAV, encoding it, handing the embeddings to the language model) should still run
//! end to end. [`tiny_audio_projector`] writes a projector that llama.cpp's `mtmd` library loads
//! and runs like a real one: a small Whisper encoder and Ultravox's projector
//! (`clip.projector_type = "ultravox"`: stacked frames → RMS norm → SwiGLU → RMS norm → linear)
//! whose output width is chosen to match the language model it will be paired with (576 for
//! SmolLM2-135M, 896 for Qwen2.5-0.5B). Its weights are random, so what the language model says
//! about a sound is noise, but deterministic noise: the same sound gives the same embeddings, a
//! different sound different ones.
//!
//! Why Ultravox: mtmd frames the audio embeddings of some projector types with marker text that
//! only their language models know (`<|audio_bos|>`/`<|audio_eos|>` for `qwen2a`,
//! `[BEGIN_AUDIO]` for `voxtral`, `<sound>` for `musicflamingo`, `<|audio>`/`<audio|>` for
//! `gemma4a`…). Ultravox, like `glma`, `meralion`, `lfm2a` and `granite_speech`, adds no text at
//! all around the audio, and of those it is the one with the fewest parts: the Whisper encoder
//! every Whisper-based type shares, and a projector of four weight-only tensors (`glma` also
//! needs begin/end-of-audio embedding tensors, `lfm2a` a Conformer encoder).
//!
//! How many embeddings a sound becomes: mtmd resamples every sound to [`SAMPLE_RATE`] (16 kHz)
//! mono, computes a Whisper log-mel spectrogram of [`MEL_BINS`] bins with a 10 ms hop, appends
//! 30 seconds of silence and cuts the spectrogram into whole windows of 3000 frames (30 s),
//! dropping the incomplete last one. Each window is encoded alone: the encoder's stride-2
//! convolution leaves 1500 positions (20 ms each), and the projector stacks [`STACK_FACTOR`] of
//! them (one second) into one embedding, so every window becomes [`TOKENS_PER_WINDOW`] = 30
//! embeddings, whatever part of it the sound fills. Anything shorter than 29.99 s is therefore
//! exactly 30 audio tokens, 30 s to 59.99 s is 60, and so on: [`audio_tokens`] counts them.
//! Embedding `k` of a window stands for its second `k` (attention mixes in the rest).
//!
//! [`wav`] writes the sounds: seed-dependent chords of slowly pulsing tones with a little noise,
//! as 16-bit PCM mono WAV, the format every decoder reads.

use corral_gguf::{GgufWriter, MetaValue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::projector::Tensors;

/// `clip.projector_type` of the written projector.
pub const PROJECTOR_TYPE: &str = "ultravox";
/// Sample rate mtmd resamples every sound to before encoding it (fixed for Whisper-based types).
pub const SAMPLE_RATE: u32 = 16_000;
/// Mel bins of the spectrogram (`clip.audio.num_mel_bins`; mtmd builds its filter bank for any
/// count from 1 to 256, real Whisper models use 80 or 128).
pub const MEL_BINS: u64 = 16;
/// Spectrogram frames per encoded window: 30 s at a 160-sample (10 ms) hop, fixed by mtmd's
/// Whisper preprocessor.
pub const WINDOW_FRAMES: u64 = 3000;
/// Encoder positions per window: the second convolution has stride 2. The position embedding
/// table has exactly this many rows.
pub const WINDOW_POSITIONS: u64 = WINDOW_FRAMES / 2;
/// Encoder positions stacked into one embedding (`clip.audio.projector.stack_factor`). It divides
/// [`WINDOW_POSITIONS`], so that the token count mtmd predicts and the one the graph produces
/// agree (mtmd aborts when they do not).
pub const STACK_FACTOR: u64 = 50;
/// Audio embeddings per 30-second window: one per second.
pub const TOKENS_PER_WINDOW: u64 = WINDOW_POSITIONS / STACK_FACTOR;
/// Width of the audio encoder.
pub const AUDIO_EMBD: u64 = 32;
/// Blocks of the audio encoder (all of them run).
pub const AUDIO_BLOCKS: u64 = 2;
/// Attention heads of the audio encoder.
pub const AUDIO_HEADS: u64 = 2;
/// Feed-forward width of the audio encoder.
pub const AUDIO_FFN: u64 = 64;
/// Hidden width of the projector: `mm.a.mlp.1` emits twice this, SwiGLU halves it.
pub const PROJECTOR_HIDDEN: u64 = 64;
/// Standard deviation of the projector's output elements (as for the vision projector).
const OUTPUT_STD: f32 = 0.5;

/// Audio embeddings mtmd makes of `n_samples` samples at [`SAMPLE_RATE`]: [`TOKENS_PER_WINDOW`]
/// for each whole 3000-frame window of the spectrogram, which has `n_samples / 160 + 3001`
/// frames (30 s of silence appended; sounds under 201 samples are padded to 201 first, an empty
/// one is refused).
pub fn audio_tokens(n_samples: u64) -> u64 {
    let frames = n_samples.max(201) / 160 + WINDOW_FRAMES + 1;
    frames / WINDOW_FRAMES * TOKENS_PER_WINDOW
}

/// An audio projector GGUF (`general.architecture = "clip"`, `clip.has_audio_encoder = true`)
/// whose embeddings are `n_embd` wide, with weights drawn from a generator seeded with `seed`.
/// All tensors are F32; the file is about 1.1 MB plus `PROJECTOR_HIDDEN × n_embd` floats.
pub fn tiny_audio_projector(n_embd: u64, seed: u64) -> Vec<u8> {
    let (e, f, h, s) = (AUDIO_EMBD, AUDIO_FFN, PROJECTOR_HIDDEN, STACK_FACTOR);
    let mut w = GgufWriter::new();
    let u32_key = |v: u64| MetaValue::U32(v as u32);
    w.set("general.architecture", MetaValue::String("clip".into()))
        .set("general.name", MetaValue::String("corral-tiny-audio-projector".into()))
        .set("general.description", MetaValue::String("random weights, for tests".into()))
        .set("general.file_type", MetaValue::U32(0))
        .set("clip.projector_type", MetaValue::String(PROJECTOR_TYPE.into()))
        .set("clip.has_vision_encoder", MetaValue::Bool(false))
        .set("clip.has_audio_encoder", MetaValue::Bool(true))
        .set("clip.use_gelu", MetaValue::Bool(true))
        .set("clip.audio.num_mel_bins", u32_key(MEL_BINS))
        .set("clip.audio.embedding_length", u32_key(e))
        .set("clip.audio.feed_forward_length", u32_key(f))
        .set("clip.audio.block_count", u32_key(AUDIO_BLOCKS))
        .set("clip.audio.projection_dim", u32_key(n_embd))
        .set("clip.audio.attention.head_count", u32_key(AUDIO_HEADS))
        .set("clip.audio.attention.layer_norm_epsilon", MetaValue::F32(1e-5))
        .set("clip.audio.projector.stack_factor", u32_key(s));

    let mut t = Tensors { w, rng: StdRng::seed_from_u64(seed) };
    // Whisper's two convolutions (kernel 3; the second has stride 2), ggml order [kernel, channels
    // in, channels out]; their biases are [1, channels] so that they broadcast over time.
    t.matrix("a.conv1d.1.weight", &[3, MEL_BINS, e], 3 * MEL_BINS, 1.0);
    t.small("a.conv1d.1.bias", &[1, e], 0.02);
    t.matrix("a.conv1d.2.weight", &[3, e, e], 3 * e, 1.0);
    t.small("a.conv1d.2.bias", &[1, e], 0.02);
    t.small("a.position_embd.weight", &[e, WINDOW_POSITIONS], 0.5);
    for i in 0..AUDIO_BLOCKS {
        let b = format!("a.blk.{i}");
        t.norm(&format!("{b}.ln1"), e);
        t.linear(&format!("{b}.attn_q"), e, e, 1.0);
        // Whisper's key projection has no bias (mtmd asserts there is none).
        t.matrix(&format!("{b}.attn_k.weight"), &[e, e], e, 1.0);
        t.linear(&format!("{b}.attn_v"), e, e, 1.0);
        t.linear(&format!("{b}.attn_out"), e, e, 1.0);
        t.norm(&format!("{b}.ln2"), e);
        t.linear(&format!("{b}.ffn_up"), e, f, 1.0);
        t.linear(&format!("{b}.ffn_down"), f, e, 1.0);
    }
    t.norm("a.post_ln", e);
    // Ultravox's projector: weights only, no biases.
    gain(&mut t, "mm.a.norm_pre.weight", e * s);
    t.matrix("mm.a.mlp.1.weight", &[e * s, 2 * h], e * s, 1.0);
    gain(&mut t, "mm.a.norm_mid.weight", h);
    t.matrix("mm.a.mlp.2.weight", &[h, n_embd], h, OUTPUT_STD);
    t.w.to_bytes()
}

/// The weight of an RMS norm: values near one, not all equal.
fn gain(t: &mut Tensors, name: &str, n: u64) {
    let weight: Vec<f32> = t.uniform(n, 0.2).into_iter().map(|v| 1.0 + v).collect();
    t.w.add_f32(name, &[n], &weight);
}

/// A 16-bit PCM mono WAV of `seconds` at `sample_rate` whose sound depends on `seed`: three tones
/// between 150 Hz and 3 kHz, each pulsing at its own slow rate, and a little noise, peaking at
/// about half of full scale. Two seeds differ in every part of the spectrum that matters.
pub fn wav(seconds: f32, sample_rate: u32, seed: u64) -> Vec<u8> {
    assert!(seconds >= 0.0 && sample_rate > 0, "a WAV needs a non-negative length and a sample rate");
    let mut rng = StdRng::seed_from_u64(seed);
    // (frequency, amplitude, pulse rate, pulse phase) of each tone.
    let tones: Vec<(f32, f32, f32, f32)> = (0..3)
        .map(|_| {
            (
                rng.gen_range(150.0..3000.0),
                rng.gen_range(0.3..1.0),
                rng.gen_range(0.5..4.0),
                rng.gen_range(0.0..std::f32::consts::TAU),
            )
        })
        .collect();
    let total: f32 = tones.iter().map(|t| t.1).sum();
    let n = (seconds * sample_rate as f32).round() as usize;
    let mut data = Vec::with_capacity(2 * n);
    for i in 0..n {
        let time = i as f32 / sample_rate as f32;
        let tau = std::f32::consts::TAU;
        let sound: f32 = tones
            .iter()
            .map(|&(freq, amp, rate, phase)| {
                let pulse = 0.6 + 0.4 * (tau * rate * time + phase).sin();
                amp * pulse * (tau * freq * time).sin()
            })
            .sum();
        let value = 0.5 * sound / total + rng.gen_range(-0.02..0.02);
        data.extend_from_slice(&((value.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }

    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // bytes per frame
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_projector_is_a_clip_file_as_wide_as_the_language_model() {
        for n_embd in [576, 896] {
            let bytes = tiny_audio_projector(n_embd, 7);
            let g = corral_gguf::read_bytes(&bytes).unwrap();
            assert_eq!(g.architecture(), Some("clip"));
            assert_eq!(g.get_str("clip.projector_type"), Some(PROJECTOR_TYPE));
            assert_eq!(g.get("clip.has_audio_encoder"), Some(&MetaValue::Bool(true)));
            assert_eq!(g.get("clip.has_vision_encoder"), Some(&MetaValue::Bool(false)));
            assert_eq!(g.get_u64("clip.audio.projection_dim"), Some(n_embd));
            assert_eq!(g.get_u64("clip.audio.num_mel_bins"), Some(MEL_BINS));
            assert_eq!(g.get_u64("clip.audio.projector.stack_factor"), Some(STACK_FACTOR));
            let dims = |name: &str| g.tensors.iter().find(|t| t.name == name).unwrap().dims.clone();
            // The last projection maps the hidden width to the language model's width.
            assert_eq!(dims("mm.a.mlp.2.weight"), vec![PROJECTOR_HIDDEN, n_embd]);
            assert_eq!(dims("mm.a.mlp.1.weight"), vec![AUDIO_EMBD * STACK_FACTOR, 2 * PROJECTOR_HIDDEN]);
            assert_eq!(dims("a.conv1d.1.weight"), vec![3, MEL_BINS, AUDIO_EMBD]);
            assert_eq!(dims("a.position_embd.weight"), vec![AUDIO_EMBD, WINDOW_POSITIONS]);
            assert!(g.tensors.iter().all(|t| t.name.starts_with("a.") || t.name.starts_with("mm.a.")));
            assert!(!g.tensors.iter().any(|t| t.name.ends_with("attn_k.bias")));
            assert_eq!(g.tensors.len(), 5 + 15 * AUDIO_BLOCKS as usize + 2 + 4);
            assert!(bytes.len() < 2_000_000, "{} bytes", bytes.len());
        }
        assert_eq!(TOKENS_PER_WINDOW, 30);
        assert_eq!(WINDOW_POSITIONS % STACK_FACTOR, 0);
    }

    #[test]
    fn audio_projector_is_deterministic_per_seed() {
        assert_eq!(tiny_audio_projector(576, 1), tiny_audio_projector(576, 1));
        assert_ne!(tiny_audio_projector(576, 1), tiny_audio_projector(576, 2));
    }

    #[test]
    fn audio_tokens_count_whole_thirty_second_windows() {
        let sr = u64::from(SAMPLE_RATE);
        assert_eq!(audio_tokens(1), 30);
        assert_eq!(audio_tokens(sr), 30);
        assert_eq!(audio_tokens(29 * sr), 30);
        // 2999 frames of sound + 3001 = 6000: the second window is whole at 29.99 s.
        assert_eq!(audio_tokens(2999 * 160 - 1), 30);
        assert_eq!(audio_tokens(2999 * 160), 60);
        assert_eq!(audio_tokens(30 * sr), 60);
        assert_eq!(audio_tokens(60 * sr), 90);
    }

    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
    }

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_le_bytes(b[i..i + 2].try_into().unwrap())
    }

    #[test]
    fn wav_has_a_pcm_header_and_all_samples() {
        let bytes = wav(1.5, 16_000, 3);
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32_at(&bytes, 4) as usize, bytes.len() - 8);
        assert_eq!(&bytes[8..12], b"WAVE");
        assert_eq!(&bytes[12..16], b"fmt ");
        assert_eq!(u32_at(&bytes, 16), 16);
        assert_eq!(u16_at(&bytes, 20), 1, "PCM");
        assert_eq!(u16_at(&bytes, 22), 1, "mono");
        assert_eq!(u32_at(&bytes, 24), 16_000);
        assert_eq!(u32_at(&bytes, 28), 32_000);
        assert_eq!(u16_at(&bytes, 32), 2);
        assert_eq!(u16_at(&bytes, 34), 16);
        assert_eq!(&bytes[36..40], b"data");
        assert_eq!(u32_at(&bytes, 40), 2 * 24_000);
        assert_eq!(bytes.len(), 44 + 2 * 24_000);
        let samples: Vec<i16> = bytes[44..].chunks(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((4_000..32_767).contains(&peak), "peak {peak}");
        assert_eq!(wav(1.5, 16_000, 3), bytes);
        assert_ne!(wav(1.5, 16_000, 4), bytes);
        // Other rates and an empty sound are valid files too.
        assert_eq!(u32_at(&wav(0.5, 44_100, 1), 40), 2 * 22_050);
        assert_eq!(wav(0.0, 16_000, 1).len(), 44);
    }
}
