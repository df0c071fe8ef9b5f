//! A random-weight Qwen2-VL vision projector (an "mmproj" GGUF with
//! `clip.projector_type = "qwen2vl_merger"`), the partner of [`crate::tiny_qwen25vl`] in
//! llama.cpp's layout.
//!
//! [`crate::projector`] covers the generic image path with LLaVA's MLP; the Qwen2-VL family
//! differs where a server can get it wrong: pictures are not squashed into one fixed square but
//! cut into as many patches as their size gives, four neighbouring patches are merged into one
//! image token, and the language model's multi-axis RoPE gives a picture of `nx × ny` tokens only
//! `max(nx, ny)` positions. [`tiny_qwen2vl_projector`] writes what mtmd's Qwen2-VL loader reads
//! (separate Q/K/V with biases, layer norms with biases, two patch-embedding kernels, no patch
//! bias, no position table, a quick-GELU feed-forward without gate, the `mm.0`/`mm.2` merger
//! behind `v.post_ln`) at a test's scale: patches of [`PATCH_SIZE`] pixels, so that the
//! [`IMAGE_SIZE`]-square test picture becomes exactly [`IMAGE_TOKENS`] tokens. The weights are
//! random: the answers about a picture are noise, but the same picture gives the same noise.

use corral_gguf::{ArrayValue, GgufWriter, MetaValue};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::projector::{Tensors, OUTPUT_STD};

/// `clip.projector_type` of the written projector.
pub const QWEN2VL_PROJECTOR_TYPE: &str = "qwen2vl_merger";
/// Side of one patch (`clip.vision.patch_size`; the released models use 14).
pub const PATCH_SIZE: u32 = 8;
/// Patches merged into one image token along each axis. mtmd's Qwen2-VL graph and its token
/// counts assume 2 whatever `clip.vision.spatial_merge_size` says, so the key is not written.
pub const SPATIAL_MERGE: u32 = 2;
/// Side of the square picture the tests send. mtmd rounds each side to a multiple of
/// `PATCH_SIZE × SPATIAL_MERGE` (16) and only then scales a picture that falls outside 8 to 4096
/// tokens; 64 is already a multiple and gives 16 tokens, so nothing is resized.
pub const IMAGE_SIZE: u32 = 64;
/// Image tokens along each side of the test picture.
pub const IMAGE_SIDE_TOKENS: u32 = IMAGE_SIZE / (PATCH_SIZE * SPATIAL_MERGE);
/// Image embeddings (KV cells) one [`IMAGE_SIZE`]-square picture becomes: `4 × 4 = 16`. mtmd adds
/// no framing tokens of its own; the prompt text around them is `<|vision_start|>` and
/// `<|vision_end|>`.
pub const IMAGE_TOKENS: u32 = IMAGE_SIDE_TOKENS * IMAGE_SIDE_TOKENS;
/// Positions the test picture advances the sequence by: 4. With a language model using M-RoPE
/// (llama.cpp's `qwen2vl` architecture) the tokens of an `nx × ny` picture share their temporal
/// position and differ by row and column, so mtmd (`mtmd_image_tokens_get_n_pos`) counts
/// `max(nx, ny)` positions for it, not `nx × ny`; the text after the picture starts there.
pub const IMAGE_N_POS: u32 = IMAGE_SIDE_TOKENS;
/// Width of the vision encoder: two heads of 16, which M-RoPE splits into four sections of 4.
pub const VISION_EMBD: u64 = 32;
/// Blocks of the vision encoder (all of them run, and all attend to the whole picture).
pub const VISION_BLOCKS: u64 = 2;
/// Attention heads of the vision encoder.
pub const VISION_HEADS: u64 = 2;
/// Feed-forward width of the vision encoder. It must differ from [`VISION_EMBD`]: mtmd takes an
/// `ffn_down` whose input is the encoder's width for an old file with up and down swapped.
pub const VISION_FFN: u64 = 64;
/// Hidden width of the merger: four merged patches side by side, as in the released models.
pub const MERGER_HIDDEN: u64 = 4 * VISION_EMBD;
/// Root mean square of GELU's output for inputs of unit variance (E[GELU(x)²] ≈ 0.4249). The
/// merger's last layer is scaled up by it so that its output has a standard deviation of about
/// [`OUTPUT_STD`], not two thirds of that.
const GELU_RMS: f32 = 0.652;

/// A Qwen2-VL projector GGUF (`general.architecture = "clip"`) whose image embeddings are `n_embd`
/// wide (the language model's `embedding_length`), with weights drawn from a generator seeded with
/// `seed`. All tensors are F32; the file is about 0.2 MB plus `MERGER_HIDDEN × n_embd` floats.
pub fn tiny_qwen2vl_projector(n_embd: u64, seed: u64) -> Vec<u8> {
    let (e, f, h) = (VISION_EMBD, VISION_FFN, MERGER_HIDDEN);
    let patch = u64::from(PATCH_SIZE);
    let mut w = GgufWriter::new();
    let u32_key = |v: u64| MetaValue::U32(v as u32);
    // Every number mtmd reads with `get_u32` is a U32, the epsilon an F32, mean and std F32
    // arrays. `clip.use_gelu` and `clip.use_silu` are absent: the encoder's feed-forward then uses
    // quick GELU, Qwen2-VL's; the merger uses GELU whatever they say.
    w.set("general.architecture", MetaValue::String("clip".into()))
        .set("general.name", MetaValue::String("corral-tiny-qwen2vl-projector".into()))
        .set("general.description", MetaValue::String("random weights, for tests".into()))
        .set("general.file_type", MetaValue::U32(0))
        .set("clip.projector_type", MetaValue::String(QWEN2VL_PROJECTOR_TYPE.into()))
        .set("clip.has_vision_encoder", MetaValue::Bool(true))
        .set("clip.has_audio_encoder", MetaValue::Bool(false))
        // Required, yet unused by this projector type: pictures keep their own size.
        .set("clip.vision.image_size", MetaValue::U32(IMAGE_SIZE))
        .set("clip.vision.patch_size", MetaValue::U32(PATCH_SIZE))
        .set("clip.vision.embedding_length", u32_key(e))
        .set("clip.vision.feed_forward_length", u32_key(f))
        .set("clip.vision.block_count", u32_key(VISION_BLOCKS))
        .set("clip.vision.projection_dim", u32_key(n_embd))
        .set("clip.vision.attention.head_count", u32_key(VISION_HEADS))
        .set("clip.vision.attention.layer_norm_epsilon", MetaValue::F32(1e-6))
        // OpenAI CLIP's normalisation, which Qwen2-VL's image processor uses.
        .set("clip.vision.image_mean", MetaValue::Array(ArrayValue::F32(vec![0.481_454_7, 0.457_827_5, 0.408_210_7])))
        .set("clip.vision.image_std", MetaValue::Array(ArrayValue::F32(vec![0.268_629_5, 0.261_302_6, 0.275_777_1])));

    let mut t = Tensors { w, rng: StdRng::seed_from_u64(seed) };
    // Qwen2-VL's patch embedding is a 3D convolution over two frames; the GGUF splits its kernel
    // into one 2D kernel per frame ([kw, kh, channels in, channels out]) and mtmd sums both over
    // a still picture. Each gets half the variance, so the sum has unit variance. No bias: mtmd
    // refuses one for this projector type.
    for name in ["v.patch_embd.weight", "v.patch_embd.weight.1"] {
        t.matrix(name, &[patch, patch, 3, e], 3 * patch * patch, std::f32::consts::FRAC_1_SQRT_2);
    }
    // LLaVA's blocks, which Qwen2-VL's are too: ffn_up then the activation then ffn_down, no gate.
    for i in 0..VISION_BLOCKS {
        t.vit_block(i, e, f);
    }
    // The merger: a layer norm over each patch, then an MLP over four neighbours side by side.
    t.norm("v.post_ln", e);
    t.linear("mm.0", 4 * e, h, 1.0);
    t.linear("mm.2", h, n_embd, OUTPUT_STD / GELU_RMS);
    t.w.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projector_is_a_qwen2vl_merger_as_wide_as_the_language_model() {
        for n_embd in [128, 896] {
            let bytes = tiny_qwen2vl_projector(n_embd, 7);
            let g = corral_gguf::read_bytes(&bytes).unwrap();
            assert_eq!(g.architecture(), Some("clip"));
            assert_eq!(g.get_str("clip.projector_type"), Some(QWEN2VL_PROJECTOR_TYPE));
            assert_eq!(g.get("clip.vision.projection_dim"), Some(&MetaValue::U32(n_embd as u32)));
            let dims = |name: &str| g.tensors.iter().find(|t| t.name == name).map(|t| t.dims.clone());
            assert_eq!(dims("mm.2.weight"), Some(vec![MERGER_HIDDEN, n_embd]));
            assert_eq!(dims("mm.2.bias"), Some(vec![n_embd]));
            assert_eq!(dims("mm.0.weight"), Some(vec![4 * VISION_EMBD, MERGER_HIDDEN]));
            let kernel = Some(vec![u64::from(PATCH_SIZE), u64::from(PATCH_SIZE), 3, VISION_EMBD]);
            assert_eq!(dims("v.patch_embd.weight"), kernel);
            assert_eq!(dims("v.patch_embd.weight.1"), kernel);
            for absent in ["v.patch_embd.bias", "v.position_embd.weight", "v.blk.0.attn_qkv.weight"] {
                assert_eq!(dims(absent), None, "{absent}");
            }
            assert_eq!(dims("v.blk.1.attn_v.bias"), Some(vec![VISION_EMBD]));
            assert_eq!(dims("v.post_ln.weight"), Some(vec![VISION_EMBD]));
            assert_eq!(g.tensors.len(), 2 + 16 * VISION_BLOCKS as usize + 2 + 4);
            assert!(bytes.len() < 1_000_000, "{} bytes", bytes.len());
        }
        assert_eq!((IMAGE_TOKENS, IMAGE_N_POS), (16, 4));
    }

    #[test]
    fn projector_is_deterministic_per_seed() {
        assert_eq!(tiny_qwen2vl_projector(128, 1), tiny_qwen2vl_projector(128, 1));
        assert_ne!(tiny_qwen2vl_projector(128, 1), tiny_qwen2vl_projector(128, 2));
    }
}
