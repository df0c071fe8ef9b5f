//! Real models rewritten the way Ollama's converter published them, for the tests of Corral's
//! load-time translation (`corral-compat`): the same weights in both layouts, so a test can load
//! each and compare what they compute.

use std::path::Path;

use corral_gguf::{ArrayValue, Gguf, GgufWriter, MetaValue};
use rand::{Rng, SeedableRng};

/// Every tensor of `g` (read from `bytes`) added to `w` as it is.
fn copy_tensors(w: &mut GgufWriter, g: &Gguf, bytes: &[u8]) {
    for t in &g.tensors {
        let start = (g.data_offset + t.offset) as usize;
        w.add_tensor(&t.name, &t.dims, t.kind, bytes[start..start + t.size as usize].to_vec());
    }
}

fn random_f32(rng: &mut rand::rngs::StdRng, n: u64) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-0.05..0.05)).collect()
}

/// Gemma 3 (llama.cpp's layout, e.g. [`crate::gemma3`]) as Ollama publishes Gemma 3: a vision
/// tower and projector in the file (random weights of Gemma 3's structure, small: see
/// [`GEMMA3_TOWER`]), the RoPE bases under their nested names, no RMS-norm epsilon (the file's
/// must be the 1e-6 Ollama assumes), and one more token in the tokenizer arrays than the
/// embedding has rows.
pub fn gemma3_as_published(src: &Path) -> Vec<u8> {
    let bytes = std::fs::read(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    let g = corral_gguf::read_bytes(&bytes).expect("a GGUF");
    assert_eq!(g.architecture(), Some("gemma3"));
    let mut w = GgufWriter::new();
    for (key, value) in &g.metadata {
        match (key.as_str(), value) {
            ("gemma3.attention.layer_norm_rms_epsilon", MetaValue::F32(eps)) => {
                assert!((eps - 1e-6).abs() < 1e-12, "Ollama's translation assumes 1e-6, the file has {eps}");
            }
            ("gemma3.rope.freq_base", v) => {
                w.set("gemma3.rope.global.freq_base", v.clone());
                w.set("gemma3.rope.local.freq_base", MetaValue::F32(10_000.0));
            }
            ("tokenizer.ggml.tokens", MetaValue::Array(ArrayValue::String(t))) => {
                let mut t = t.clone();
                t.push("<image_soft_token>".into());
                w.set(key, MetaValue::Array(ArrayValue::String(t)));
            }
            ("tokenizer.ggml.scores", MetaValue::Array(ArrayValue::F32(s))) => {
                let mut s = s.clone();
                s.push(0.0);
                w.set(key, MetaValue::Array(ArrayValue::F32(s)));
            }
            ("tokenizer.ggml.token_type", MetaValue::Array(ArrayValue::I32(ty))) => {
                let mut ty = ty.clone();
                ty.push(3);
                w.set(key, MetaValue::Array(ArrayValue::I32(ty)));
            }
            _ => {
                w.set(key, value.clone());
            }
        }
    }
    let t = GEMMA3_TOWER;
    w.set("gemma3.mm.tokens_per_image", MetaValue::U32(t.tokens_per_image));
    for (key, value) in [
        ("block_count", t.blocks),
        ("embedding_length", t.embd),
        ("feed_forward_length", t.ffn),
        ("image_size", t.image_size),
        ("patch_size", t.patch_size),
        ("attention.head_count", t.heads),
        ("num_channels", 3),
    ] {
        w.set(&format!("gemma3.vision.{key}"), MetaValue::U32(value));
    }
    w.set("gemma3.vision.attention.layer_norm_epsilon", MetaValue::F32(1e-6));
    copy_tensors(&mut w, &g, &bytes);
    let embd = g.get_u64("gemma3.embedding_length").expect("embedding_length");
    gemma3_tower(embd).write(&mut w, false, matrices_in_half);
    w.to_bytes()
}

/// The sizes of the fixture's Gemma 3 vision tower: a SigLIP of Gemma 3's structure, small (112
/// pixels, 8×8 patches pooled to 2×2 = 4 image tokens).
#[derive(Debug, Clone, Copy)]
pub struct Gemma3Tower {
    pub image_size: u32,
    pub patch_size: u32,
    pub embd: u32,
    pub ffn: u32,
    pub blocks: u32,
    pub heads: u32,
    pub tokens_per_image: u32,
}

pub const GEMMA3_TOWER: Gemma3Tower =
    Gemma3Tower { image_size: 112, patch_size: 14, embd: 32, ffn: 64, blocks: 2, heads: 2, tokens_per_image: 4 };

/// One tensor of a vision tower: its name in Ollama's file and in llama.cpp's projector, shape,
/// values.
pub(crate) struct TowerTensor {
    pub(crate) ollama: String,
    pub(crate) clip: String,
    pub(crate) dims: Vec<u64>,
    pub(crate) values: Vec<f32>,
}

/// A vision tower under construction: every tensor drawn in turn from one generator, so that the
/// published file and the reference projector written from it hold the same values.
pub(crate) struct Tower {
    rng: rand::rngs::StdRng,
    pub(crate) tensors: Vec<TowerTensor>,
}

impl Tower {
    pub(crate) fn new(seed: u64) -> Tower {
        Tower { rng: rand::rngs::StdRng::seed_from_u64(seed), tensors: Vec::new() }
    }

    /// A tensor of values in `offset ± scale`. Matrices (two or more dimensions) are rounded to
    /// F16, which both converters store them as: a copy in F32 then holds the same numbers.
    pub(crate) fn add(&mut self, ollama: &str, clip: &str, dims: &[u64], scale: f32, offset: f32) {
        let n: u64 = dims.iter().product();
        let values: Vec<f32> = (0..n).map(|_| offset + self.rng.gen_range(-scale..scale)).collect();
        let values =
            if dims.len() >= 2 { values.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect() } else { values };
        self.tensors.push(TowerTensor { ollama: ollama.into(), clip: clip.into(), dims: dims.to_vec(), values });
    }

    /// A norm's weights: near one, not all equal.
    pub(crate) fn norm(&mut self, ollama: &str, clip: &str, n: u64) {
        self.add(ollama, clip, &[n], 0.2, 1.0);
    }

    /// `<stem>.weight`, a projection over `dims[0]` inputs that keeps unit variance, and its small
    /// `<stem>.bias`.
    pub(crate) fn linear(&mut self, ollama: &str, clip: &str, dims: &[u64]) {
        self.add(&format!("{ollama}.weight"), &format!("{clip}.weight"), dims, (3.0 / dims[0] as f32).sqrt(), 0.0);
        self.add(&format!("{ollama}.bias"), &format!("{clip}.bias"), &dims[dims.len() - 1..], 0.02, 0.0);
    }

    /// Every tensor into `w` under its published (`clip` false) or llama.cpp name, in F16 where
    /// `half` says so and F32 otherwise.
    pub(crate) fn write(&self, w: &mut GgufWriter, clip: bool, half: impl Fn(&TowerTensor) -> bool) {
        for t in &self.tensors {
            put(w, if clip { &t.clip } else { &t.ollama }, &t.dims, &t.values, half(t));
        }
    }
}

/// One tensor into `w`, in F16 (`half`) or F32.
pub(crate) fn put(w: &mut GgufWriter, name: &str, dims: &[u64], values: &[f32], half: bool) {
    if half {
        let data = values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        w.add_tensor(name, dims, corral_gguf::GgmlType::F16, data);
    } else {
        w.add_f32(name, dims, values);
    }
}

/// Matrices in F16, vectors in F32: what Ollama's converter writes for a vision tower.
pub(crate) fn matrices_in_half(t: &TowerTensor) -> bool {
    t.dims.len() >= 2
}

/// The tower's tensors for a language model `text_embd` wide (random, seeded; the values of
/// matrices are rounded to F16, as the published file stores them).
fn gemma3_tower(text_embd: u64) -> Tower {
    let t = GEMMA3_TOWER;
    let (e, f, p) = (u64::from(t.embd), u64::from(t.ffn), u64::from(t.patch_size));
    let patches = u64::from(t.image_size / t.patch_size).pow(2);
    let mut tower = Tower::new(3);
    tower.add("v.patch_embedding.weight", "v.patch_embd.weight", &[p, p, 3, e], 0.1, 0.0);
    tower.add("v.patch_embedding.bias", "v.patch_embd.bias", &[e], 0.02, 0.0);
    tower.add("v.position_embedding.weight", "v.position_embd.weight", &[e, patches], 0.5, 0.0);
    for i in 0..t.blocks {
        let b = |part: &str| format!("v.blk.{i}.{part}");
        for (ollama, clip) in [("layer_norm1", "ln1"), ("layer_norm2", "ln2")] {
            tower.norm(&b(&format!("{ollama}.weight")), &b(&format!("{clip}.weight")), e);
            tower.add(&b(&format!("{ollama}.bias")), &b(&format!("{clip}.bias")), &[e], 0.02, 0.0);
        }
        for (ollama, clip, n_in, n_out) in [
            ("attn_q", "attn_q", e, e),
            ("attn_k", "attn_k", e, e),
            ("attn_v", "attn_v", e, e),
            ("attn_output", "attn_out", e, e),
            ("mlp.fc1", "ffn_up", e, f),
            ("mlp.fc2", "ffn_down", f, e),
        ] {
            tower.linear(&b(ollama), &b(clip), &[n_in, n_out]);
        }
    }
    tower.norm("v.post_layernorm.weight", "v.post_ln.weight", e);
    tower.add("v.post_layernorm.bias", "v.post_ln.bias", &[e], 0.02, 0.0);
    tower.norm("mm.mm_soft_emb_norm.weight", "mm.soft_emb_norm.weight", e);
    // Stored transposed (`[text_embd, e]`): its inputs are the tower's `e`.
    let bound = (3.0 / e as f32).sqrt();
    tower.add("mm.mm_input_projection.weight", "mm.input_projection.weight", &[text_embd, e], bound, 0.0);
    tower
}

/// What every reference projector's header states, in `clip.cpp`'s keys.
pub(crate) struct ClipHeader {
    pub(crate) projector: &'static str,
    /// The encoder's activation: `gelu` or `silu` (`clip.use_gelu` / `clip.use_silu`).
    pub(crate) activation: &'static str,
    pub(crate) image_size: u32,
    pub(crate) patch_size: u32,
    pub(crate) embd: u32,
    pub(crate) ffn: u32,
    pub(crate) blocks: u32,
    pub(crate) heads: u32,
    pub(crate) eps: f32,
    /// The pictures' normalisation per colour.
    pub(crate) mean: [f32; 3],
    pub(crate) std: [f32; 3],
}

/// The normalisation of SigLIP-style towers (and of the ones whose files say none).
pub(crate) const HALF: [f32; 3] = [0.5; 3];

/// A projector writer holding `h`'s keys, for a language model `text_embd` wide.
pub(crate) fn clip_header(h: &ClipHeader, text_embd: u64) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set("general.architecture", MetaValue::String("clip".into()))
        .set("clip.projector_type", MetaValue::String(h.projector.into()))
        .set("clip.has_vision_encoder", MetaValue::Bool(true))
        .set(&format!("clip.use_{}", h.activation), MetaValue::Bool(true))
        .set("clip.vision.image_size", MetaValue::U32(h.image_size))
        .set("clip.vision.patch_size", MetaValue::U32(h.patch_size))
        .set("clip.vision.embedding_length", MetaValue::U32(h.embd))
        .set("clip.vision.feed_forward_length", MetaValue::U32(h.ffn))
        .set("clip.vision.block_count", MetaValue::U32(h.blocks))
        .set("clip.vision.attention.head_count", MetaValue::U32(h.heads))
        .set("clip.vision.attention.layer_norm_epsilon", MetaValue::F32(h.eps))
        .set("clip.vision.projection_dim", MetaValue::U32(text_embd as u32))
        .set("clip.vision.image_mean", MetaValue::Array(ArrayValue::F32(h.mean.to_vec())))
        .set("clip.vision.image_std", MetaValue::Array(ArrayValue::F32(h.std.to_vec())));
    w
}

/// The vision tower of [`gemma3_as_published`] as the separate projector llama.cpp's converter
/// writes for Gemma 3 (`clip` architecture, `gemma3` projector, its tensor names, the patch and
/// position embeddings in F32): the reference a published file serving as its own projector must
/// compute the same as. `text_embd`: the language model's width.
pub fn gemma3_reference_projector(text_embd: u64) -> Vec<u8> {
    let t = GEMMA3_TOWER;
    let mut w = clip_header(
        &ClipHeader {
            projector: "gemma3",
            activation: "gelu",
            image_size: t.image_size,
            patch_size: t.patch_size,
            embd: t.embd,
            ffn: t.ffn,
            blocks: t.blocks,
            heads: t.heads,
            eps: 1e-6,
            mean: HALF,
            std: HALF,
        },
        text_embd,
    );
    w.set("clip.vision.projector.scale_factor", MetaValue::U32(4));
    gemma3_tower(text_embd).write(&mut w, true, |t| {
        let embedding = t.clip == "v.patch_embd.weight" || t.clip == "v.position_embd.weight";
        matrices_in_half(t) && !embedding
    });
    w.to_bytes()
}

/// `bytes` (a GGUF) with every tensor as F32: a source for `create --quantize` in whatever layout
/// it was written in.
pub fn dequantized(bytes: &[u8]) -> Vec<u8> {
    let g = corral_gguf::read_bytes(bytes).expect("a GGUF");
    let mut w = GgufWriter::new();
    for (key, value) in &g.metadata {
        w.set(key, value.clone());
    }
    w.set("general.file_type", MetaValue::U32(0));
    for t in &g.tensors {
        let start = (g.data_offset + t.offset) as usize;
        let data = &bytes[start..start + t.size as usize];
        let values = corral_gguf::dequantize(t.kind, data, t.elements() as usize)
            .unwrap_or_else(|| panic!("tensor {}: cannot read {}", t.name, t.kind.name()));
        w.add_f32(&t.name, &t.dims, &values);
    }
    w.to_bytes()
}

/// A Nemotron-H MoE file (llama.cpp's layout) as the unified text, vision and audio model Ollama
/// published (`nemotron_h_omni`): the architecture and its keys renamed, the media encoders' keys
/// and stand-in tensors (`a.*`, `v.*`, `mm.*`) added after the text weights.
pub fn as_nemotron_omni(bytes: &[u8]) -> Vec<u8> {
    let g = corral_gguf::read_bytes(bytes).expect("a GGUF");
    assert_eq!(g.architecture(), Some("nemotron_h_moe"));
    let mut w = GgufWriter::new();
    for (key, value) in &g.metadata {
        match key.strip_prefix("nemotron_h_moe.") {
            _ if key == "general.architecture" => w.set(key, MetaValue::String("nemotron_h_omni".into())),
            Some(rest) => w.set(&format!("nemotron_h_omni.{rest}"), value.clone()),
            None => w.set(key, value.clone()),
        };
    }
    w.set("nemotron_h_omni.vision.block_count", MetaValue::U32(1));
    w.set("nemotron_h_omni.audio.block_count", MetaValue::U32(1));
    copy_tensors(&mut w, &g, bytes);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for (name, dims) in
        [("a.conv1d.0.weight", [3u64, 16]), ("v.patch_embd.weight", [16, 16]), ("mm.vision.fc.weight", [16, 16])]
    {
        w.add_f32(name, &dims, &random_f32(&mut rng, dims.iter().product()));
    }
    w.to_bytes()
}
