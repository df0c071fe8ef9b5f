//! Mistral 3's vision side at a test's scale (Pixtral's tower with Mistral Small 3.1's patch
//! merger and projector), in the two layouts Corral meets it in: inside the model file as Ollama
//! published it ([`crate::tiny_mistral3`] with `Layout::Published`), and as the separate projector
//! llama.cpp's converter writes for the same checkpoint ([`mistral3_reference_projector`]). The
//! values come from one seeded generator, the matrices in F16 in both files.
//!
//! The tower: a patch convolution without bias, an RMS norm, blocks of RMS norms, unbiased
//! Q/K/V/O with 2-D RoPE and a SiLU-gated feed-forward, then the projector side: an RMS norm, the
//! patch merger (2×2 neighbouring patches side by side, one linear layer) and a two-layer GELU
//! MLP into the language model's width. Where the layouts differ (Ollama's → llama.cpp's):
//!
//! - `v.patch_conv` → `v.patch_embd`, `v.encoder_norm` → `v.pre_ln`, in the blocks `attn_norm`,
//!   `ffn_norm`, `attn_output` → `ln1`, `ln2`, `attn_out`; `mm.norm` → `mm.input_norm`,
//!   `mm.patch_merger.merging_layer` → `mm.patch_merger`, `mm.linear_{1,2}` → `mm.{1,2}`;
//! - `mistral3.vision.*` keys → `clip.vision.*`, with what Ollama's engine did without: the
//!   epsilon (1e-5), SiLU, CLIP's mean and standard deviation;
//! - Q and K rows: Ollama's in the checkpoint's rotate-half order, llama.cpp's with each head's
//!   two halves interleaved ([`adjacent_pairs`]);
//! - the projector has `v.token_embd.img_break`, the text model's embedding of `[IMG_BREAK]` in
//!   F32, which Ollama's file only has as a row of `token_embd.weight`.
//!
//! Mistral's image tokens, `[IMG]`, `[IMG_BREAK]` and `[IMG_END]`, are added to the vocabulary of
//! both layouts ([`with_image_tokens`]): `mtmd` ends a picture with `[IMG_END]`, and the reference
//! projector needs `[IMG_BREAK]`'s embedding.

use corral_gguf::{ArrayValue, Gguf, GgufWriter, MetaValue};

use crate::published::{clip_header, matrices_in_half, ClipHeader, Tower};
use crate::published_qwen::{CLIP_MEAN, CLIP_STD};

/// The sizes of the fixture's Mistral 3 vision tower.
#[derive(Debug, Clone, Copy)]
pub struct Mistral3Tower {
    /// The longest side the preprocessor aims for (the released models' 1540): a key only, as
    /// `mtmd` sizes Pixtral's pictures by their token count.
    pub image_size: u32,
    pub patch_size: u32,
    pub embd: u32,
    pub ffn: u32,
    pub blocks: u32,
    pub heads: u32,
    /// Patches merged into one image token along each side.
    pub spatial_merge: u32,
}

/// 32 wide in two heads of 16 (each axis of the 2-D RoPE turning four pairs), two blocks,
/// 14-pixel patches merged 2×2: a picture of 112×84 pixels is 4×3 image tokens, and two
/// `[IMG_BREAK]`s between its rows.
pub const MISTRAL3_TOWER: Mistral3Tower =
    Mistral3Tower { image_size: 1540, patch_size: 14, embd: 32, ffn: 64, blocks: 2, heads: 2, spatial_merge: 2 };

/// Mistral's image tokens: a picture's tokens, the end of one of its rows, its end.
pub const IMAGE_TOKENS: [&str; 3] = ["[IMG]", "[IMG_BREAK]", "[IMG_END]"];

/// `tokenizer` with [`IMAGE_TOKENS`] appended as control tokens, where it lacks them.
pub(crate) fn with_image_tokens(tokenizer: &Gguf) -> Gguf {
    let mut g = tokenizer.clone();
    let missing: Vec<&str> = IMAGE_TOKENS.iter().copied().filter(|t| token_id(tokenizer, t).is_none()).collect();
    for (key, value) in &mut g.metadata {
        match (key.as_str(), value) {
            ("tokenizer.ggml.tokens", MetaValue::Array(ArrayValue::String(v))) => {
                v.extend(missing.iter().map(|t| t.to_string()))
            }
            // 3: a control token.
            ("tokenizer.ggml.token_type", MetaValue::Array(ArrayValue::I32(v))) => v.extend(missing.iter().map(|_| 3)),
            ("tokenizer.ggml.scores", MetaValue::Array(ArrayValue::F32(v))) => v.extend(missing.iter().map(|_| 0.0)),
            _ => {}
        }
    }
    g
}

/// The id of token `text` in `g`'s vocabulary.
pub(crate) fn token_id(g: &Gguf, text: &str) -> Option<u32> {
    match g.get("tokenizer.ggml.tokens")? {
        MetaValue::Array(ArrayValue::String(t)) => t.iter().position(|s| s == text).map(|i| i as u32),
        _ => None,
    }
}

/// The tower's tensors for a language model `text_embd` wide, drawn from a fixed seed, Q and K in
/// the checkpoint's (and Ollama's) row order.
fn mistral3_tower(text_embd: u64) -> Tower {
    let t = MISTRAL3_TOWER;
    let (e, f, p, m) = (u64::from(t.embd), u64::from(t.ffn), u64::from(t.patch_size), u64::from(t.spatial_merge));
    // Values that keep about unit variance through a projection from `fan_in` inputs.
    let unit = |fan_in: u64| (3.0 / fan_in as f32).sqrt();
    let mut tower = Tower::new(31);
    tower.add("v.patch_conv.weight", "v.patch_embd.weight", &[p, p, 3, e], unit(3 * p * p), 0.0);
    tower.norm("v.encoder_norm.weight", "v.pre_ln.weight", e);
    for i in 0..t.blocks {
        let b = |part: &str| format!("v.blk.{i}.{part}.weight");
        tower.norm(&b("attn_norm"), &b("ln1"), e);
        for (ollama, clip) in
            [("attn_q", "attn_q"), ("attn_k", "attn_k"), ("attn_v", "attn_v"), ("attn_output", "attn_out")]
        {
            tower.add(&b(ollama), &b(clip), &[e, e], unit(e), 0.0);
        }
        tower.norm(&b("ffn_norm"), &b("ln2"), e);
        for (name, dims) in [("ffn_gate", [e, f]), ("ffn_up", [e, f]), ("ffn_down", [f, e])] {
            tower.add(&b(name), &b(name), &dims, unit(dims[0]), 0.0);
        }
    }
    tower.norm("mm.norm.weight", "mm.input_norm.weight", e);
    let merged = e * m * m;
    tower.add("mm.patch_merger.merging_layer.weight", "mm.patch_merger.weight", &[merged, e], unit(merged), 0.0);
    tower.add("mm.linear_1.weight", "mm.1.weight", &[e, text_embd], unit(e), 0.0);
    tower.add("mm.linear_2.weight", "mm.2.weight", &[text_embd, text_embd], unit(text_embd), 0.0);
    tower
}

/// Adds the tower to a Mistral 3 file being written in Ollama's layout: its keys, with the types
/// Ollama's converter writes, and its tensors under Ollama's names (matrices in F16, vectors in
/// F32, Q and K as the checkpoint has them). `text_embd`: the language model's width;
/// `image_token`: the id of `[IMG]`.
pub(crate) fn add_published_mistral3_tower(w: &mut GgufWriter, text_embd: u64, image_token: u32) {
    let t = MISTRAL3_TOWER;
    for (key, value) in [
        ("block_count", t.blocks),
        ("embedding_length", t.embd),
        ("feed_forward_length", t.ffn),
        ("attention.head_count", t.heads),
        ("attention.key_length", t.embd / t.heads),
        ("image_size", t.image_size),
        ("patch_size", t.patch_size),
        ("num_channels", 3),
    ] {
        w.set(&format!("mistral3.vision.{key}"), MetaValue::U32(value));
    }
    w.set("mistral3.vision.rope.freq_base", MetaValue::F32(10_000.0));
    w.set("mistral3.image_token_index", MetaValue::U32(image_token));
    w.set("mistral3.spatial_merge_size", MetaValue::U32(t.spatial_merge));
    w.set("mistral3.mm.projector_bias", MetaValue::Bool(false));
    w.set("mistral3.mm.projector_hidden_act", MetaValue::String("gelu".into()));
    mistral3_tower(text_embd).write(w, false, matrices_in_half);
}

/// `values`, `rows` rows of Q or K in rotate-half order within each of `heads` heads, in the order
/// llama.cpp's converter writes them: each head seen as 2 halves of `head_dim/2` rows, the two
/// axes swapped, so that the halves' rows alternate.
fn adjacent_pairs(values: &[f32], rows: usize, heads: usize) -> Vec<f32> {
    let (row_len, head_dim) = (values.len() / rows, rows / heads);
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(values.len());
    for head in 0..heads {
        for j in 0..half {
            for side in 0..2 {
                let from = head * head_dim + side * half + j;
                out.extend_from_slice(&values[from * row_len..(from + 1) * row_len]);
            }
        }
    }
    out
}

/// The vision tower of [`crate::tiny_mistral3`]'s published layout as the separate projector
/// llama.cpp's converter writes for it with `--outtype f16` (`clip` architecture, `pixtral`
/// projector, its tensor names, Q and K reordered, matrices in F16), for the text model `text`
/// (the bytes of `tiny_mistral3` in llama.cpp's layout): `v.token_embd.img_break` is its
/// embedding of `[IMG_BREAK]`, as F32. The reference a published file serving as its own
/// projector must compute the same as.
pub fn mistral3_reference_projector(text: &[u8]) -> Vec<u8> {
    let g = corral_gguf::read_bytes(text).expect("a GGUF");
    let text_embd = g.get_u64("mistral3.embedding_length").expect("a mistral3 model");
    let id = u64::from(token_id(&g, "[IMG_BREAK]").expect("[IMG_BREAK] in the vocabulary"));
    let embd = g.tensors.iter().find(|t| t.name == "token_embd.weight").expect("token embeddings");
    let row_bytes = embd.size / embd.dims[1];
    let start = (g.data_offset + embd.offset + id * row_bytes) as usize;
    let img_break = corral_gguf::dequantize(embd.kind, &text[start..start + row_bytes as usize], text_embd as usize)
        .expect("embeddings of a type the test kit reads");

    let t = MISTRAL3_TOWER;
    let mut w = clip_header(
        &ClipHeader {
            projector: "pixtral",
            activation: "silu",
            image_size: t.image_size,
            patch_size: t.patch_size,
            embd: t.embd,
            ffn: t.ffn,
            blocks: t.blocks,
            heads: t.heads,
            eps: 1e-5,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        },
        text_embd,
    );
    w.set("clip.vision.spatial_merge_size", MetaValue::U32(t.spatial_merge));
    let mut tower = mistral3_tower(text_embd);
    for q_or_k in
        tower.tensors.iter_mut().filter(|x| x.clip.ends_with(".attn_q.weight") || x.clip.ends_with(".attn_k.weight"))
    {
        q_or_k.values = adjacent_pairs(&q_or_k.values, q_or_k.dims[1] as usize, t.heads as usize);
    }
    tower.write(&mut w, true, matrices_in_half);
    w.add_f32("v.token_embd.img_break", &[text_embd], &img_break);
    w.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Layout;

    fn tensor_data<'a>(g: &Gguf, bytes: &'a [u8], name: &str) -> (&'a [u8], Vec<u64>) {
        let t = g.tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no {name}"));
        let start = (g.data_offset + t.offset) as usize;
        (&bytes[start..start + t.size as usize], t.dims.clone())
    }

    #[test]
    fn the_converters_order_interleaves_each_heads_halves() {
        // Two heads of four rows of one value: rows 0..8 become 0 2 1 3 | 4 6 5 7.
        let values: Vec<f32> = (0..8).map(|v| v as f32).collect();
        assert_eq!(adjacent_pairs(&values, 8, 2), [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }

    #[test]
    fn both_layouts_have_the_image_tokens_and_the_same_text() {
        let tok = crate::letters_tokenizer("abcdefgh");
        for layout in [Layout::LlamaCpp, Layout::Published] {
            let g = corral_gguf::read_bytes(&crate::tiny_mistral3(layout, &tok, 1)).unwrap();
            let ids: Vec<Option<u32>> = IMAGE_TOKENS.iter().map(|t| token_id(&g, t)).collect();
            assert_eq!(ids, [Some(9), Some(10), Some(11)]);
            assert_eq!(g.get_u64("mistral3.vocab_size"), Some(12));
        }
        // Added once: a vocabulary that has them keeps its own.
        let twice = with_image_tokens(&with_image_tokens(&tok));
        assert_eq!(token_id(&twice, "[IMG_END]"), Some(11));
        assert_eq!(twice.get("tokenizer.ggml.tokens").and_then(|t| t.as_array()).map(|a| a.len()), Some(12));
    }

    #[test]
    fn the_reference_projector_has_llama_cpps_names_and_order() {
        let tok = crate::letters_tokenizer("abcdefgh");
        let text = crate::tiny_mistral3(Layout::LlamaCpp, &tok, 1);
        let published = crate::tiny_mistral3(Layout::Published, &tok, 1);
        let reference = mistral3_reference_projector(&text);
        let (r, p) = (corral_gguf::read_bytes(&reference).unwrap(), corral_gguf::read_bytes(&published).unwrap());
        assert_eq!(r.get_str("clip.projector_type"), Some("pixtral"));
        let tower = mistral3_tower(64);
        assert_eq!(r.tensors.len(), tower.tensors.len() + 1);
        for t in &tower.tensors {
            let ((a, da), (b, db)) = (tensor_data(&p, &published, &t.ollama), tensor_data(&r, &reference, &t.clip));
            assert_eq!(da, db, "{}", t.clip);
            let reordered = t.clip.ends_with("attn_q.weight") || t.clip.ends_with("attn_k.weight");
            assert_eq!(a == b, !reordered, "{}", t.clip);
        }
        // Q's row 1 (of 16 per head) is the published row 8, each 32 F16 values wide.
        let (a, _) = tensor_data(&p, &published, "v.blk.1.attn_q.weight");
        let (b, _) = tensor_data(&r, &reference, "v.blk.1.attn_q.weight");
        assert_eq!(&b[64..128], &a[8 * 64..9 * 64]);
        // The [IMG_BREAK] row, dequantized: the text model's, as both layouts hold it.
        let (row, dims) = tensor_data(&r, &reference, "v.token_embd.img_break");
        assert_eq!(dims, [64]);
        let g = corral_gguf::read_bytes(&text).unwrap();
        let (embd, _) = tensor_data(&g, &text, "token_embd.weight");
        let all = corral_gguf::dequantize(corral_gguf::GgmlType::Q8_0, embd, 64 * 12).unwrap();
        let want: Vec<u8> = all[10 * 64..11 * 64].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(row, want.as_slice());
        assert!(p.tensors.iter().all(|t| t.name != "v.token_embd.img_break"));
    }
}
