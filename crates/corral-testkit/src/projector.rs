//! A random-weight multimodal projector (an "mmproj" GGUF) and test pictures to feed it.
//!
//! Real vision weights are not available to the tests, yet the image path of the server (loading
//! a projector next to a language model, decoding a picture, encoding it, handing the embeddings
//! to the language model) should still run end to end. [`tiny_vision_projector`] writes a
//! projector that llama.cpp's `mtmd` library loads and runs like a real one: a small ViT encoder
//! and a LLaVA-1.5 two-layer MLP (`clip.projector_type = "mlp"`) whose output width is chosen to
//! match the language model it will be paired with (576 for SmolLM2-135M, 896 for Qwen2.5-0.5B).
//! Its weights are random, so what the language model says about a picture is noise, but it is
//! deterministic noise: the same picture gives the same embeddings, a different picture different
//! ones.
//!
//! Why LLaVA's MLP and not `idefics3` (SmolVLM's projector, the one really paired with SmolLM2):
//! mtmd frames every idefics3 image with the tokens `<fake_token_around_image>` and `<global-img>`,
//! looked up in the language model's vocabulary. Plain SmolLM2 and Qwen2.5 do not have them, the
//! lookup yields -1, and llama.cpp refuses to decode the image's framing text. LLaVA's MLP needs
//! no special token and no tiling: every picture is resized (aspect kept, padded) to one
//! [`IMAGE_SIZE`] square and becomes exactly [`IMAGE_TOKENS`] embeddings.
//!
//! [`png`] writes the pictures: seed-dependent colour gradients with some noise, encoded with
//! stored (uncompressed) deflate blocks so that no image or compression crate is needed.

use corral_gguf::{ArrayValue, GgufWriter, MetaValue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `clip.projector_type` of the written projector (LLaVA-1.5's two-layer MLP).
pub const PROJECTOR_TYPE: &str = "mlp";
/// Side of the square every picture is resized to before encoding (`clip.vision.image_size`).
pub const IMAGE_SIZE: u32 = 64;
/// Side of one ViT patch (`clip.vision.patch_size`).
pub const PATCH_SIZE: u32 = 16;
/// Image embeddings (positions in the language model's context) one picture becomes, whatever its
/// width and height: mtmd resizes any W×H picture to `IMAGE_SIZE`² (keeping the aspect ratio,
/// padding the rest) and the MLP projector emits one embedding per patch, so
/// `(IMAGE_SIZE / PATCH_SIZE)² = 16`. No tiles, no overview image, no framing tokens.
pub const IMAGE_TOKENS: u32 = (IMAGE_SIZE / PATCH_SIZE) * (IMAGE_SIZE / PATCH_SIZE);
/// Width of the vision encoder.
pub const VISION_EMBD: u64 = 64;
/// Blocks of the vision encoder. As in LLaVA-1.5, mtmd takes the features after the
/// second-to-last block, so only the first of the two runs; both are in the file.
pub const VISION_BLOCKS: u64 = 2;
/// Attention heads of the vision encoder.
pub const VISION_HEADS: u64 = 4;
/// Feed-forward width of the vision encoder.
pub const VISION_FFN: u64 = 128;
/// Hidden width of the MLP projector (`mm.0` → GELU → `mm.2`).
pub const PROJECTOR_HIDDEN: u64 = 128;
/// Standard deviation of the projector's output elements: about that of a small language model's
/// token embeddings times a few, so that the language model's answer depends on the picture.
pub(crate) const OUTPUT_STD: f32 = 0.5;

/// The sizes of a LLaVA-style projector's vision encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisionShape {
    /// Side of the square pictures are resized to.
    pub image_size: u32,
    pub patch_size: u32,
    /// Width, feed-forward width and blocks of the encoder, and its attention heads.
    pub embd: u64,
    pub ffn: u64,
    pub blocks: u64,
    pub heads: u64,
    /// Hidden width of the MLP projector.
    pub hidden: u64,
}

impl VisionShape {
    /// The tests' projector: 16 image tokens, under a megabyte.
    pub const TINY: VisionShape = VisionShape {
        image_size: IMAGE_SIZE,
        patch_size: PATCH_SIZE,
        embd: VISION_EMBD,
        ffn: VISION_FFN,
        blocks: VISION_BLOCKS,
        heads: VISION_HEADS,
        hidden: PROJECTOR_HIDDEN,
    };
    /// CLIP ViT-B/16 at 224 pixels (196 image tokens, 86 million encoder weights), for benches:
    /// the work of a real, if smaller than usual, vision tower.
    pub const VIT_B16: VisionShape =
        VisionShape { image_size: 224, patch_size: 16, embd: 768, ffn: 3072, blocks: 12, heads: 12, hidden: 1024 };

    /// Image embeddings one picture becomes.
    pub fn image_tokens(&self) -> u32 {
        (self.image_size / self.patch_size).pow(2)
    }
}

/// A projector GGUF (`general.architecture = "clip"`) whose image embeddings are `n_embd` wide,
/// with weights drawn from a generator seeded with `seed`. All tensors are F32; the file is about
/// 0.5 MB plus `PROJECTOR_HIDDEN × n_embd` floats.
pub fn tiny_vision_projector(n_embd: u64, seed: u64) -> Vec<u8> {
    vision_projector(&VisionShape::TINY, n_embd, seed)
}

/// A projector of `shape` whose image embeddings are `n_embd` wide (see
/// [`tiny_vision_projector`]).
pub fn vision_projector(shape: &VisionShape, n_embd: u64, seed: u64) -> Vec<u8> {
    let (e, f, h) = (shape.embd, shape.ffn, shape.hidden);
    let patch = u64::from(shape.patch_size);
    let n_patches = u64::from(shape.image_tokens());
    let mut w = GgufWriter::new();
    let u32_key = |v: u64| MetaValue::U32(v as u32);
    w.set("general.architecture", MetaValue::String("clip".into()))
        .set("general.name", MetaValue::String("corral-tiny-projector".into()))
        .set("general.description", MetaValue::String("random weights, for tests".into()))
        .set("general.file_type", MetaValue::U32(0))
        .set("clip.projector_type", MetaValue::String(PROJECTOR_TYPE.into()))
        .set("clip.has_vision_encoder", MetaValue::Bool(true))
        .set("clip.has_audio_encoder", MetaValue::Bool(false))
        .set("clip.use_gelu", MetaValue::Bool(true))
        .set("clip.vision.image_size", MetaValue::U32(shape.image_size))
        .set("clip.vision.patch_size", MetaValue::U32(shape.patch_size))
        .set("clip.vision.embedding_length", u32_key(e))
        .set("clip.vision.feed_forward_length", u32_key(f))
        .set("clip.vision.block_count", u32_key(shape.blocks))
        .set("clip.vision.projection_dim", u32_key(n_embd))
        .set("clip.vision.attention.head_count", u32_key(shape.heads))
        .set("clip.vision.attention.layer_norm_epsilon", MetaValue::F32(1e-6))
        .set("clip.vision.image_mean", MetaValue::Array(ArrayValue::F32(vec![0.5; 3])))
        .set("clip.vision.image_std", MetaValue::Array(ArrayValue::F32(vec![0.5; 3])));

    let mut t = Tensors { w, rng: StdRng::seed_from_u64(seed) };
    // Patch embedding: a stride-16 convolution, ggml order [kw, kh, channels in, channels out].
    t.matrix("v.patch_embd.weight", &[patch, patch, 3, e], 3 * patch * patch, 1.0);
    t.small("v.patch_embd.bias", &[e], 0.02);
    t.small("v.position_embd.weight", &[e, n_patches], 0.5);
    t.norm("v.pre_ln", e);
    for i in 0..shape.blocks {
        t.vit_block(i, e, f);
    }
    t.norm("v.post_ln", e);
    t.linear("mm.0", e, h, 1.0);
    t.linear("mm.2", h, n_embd, OUTPUT_STD);
    t.w.to_bytes()
}

/// The writer and the generator all weights come from, in a fixed order (also the audio
/// projector's, in [`crate::audio`]).
pub(crate) struct Tensors {
    pub(crate) w: GgufWriter,
    pub(crate) rng: StdRng,
}

impl Tensors {
    pub(crate) fn uniform(&mut self, n: u64, bound: f32) -> Vec<f32> {
        (0..n).map(|_| self.rng.gen_range(-bound..bound)).collect()
    }

    /// Values in `±bound`.
    pub(crate) fn small(&mut self, name: &str, dims: &[u64], bound: f32) {
        let values = self.uniform(dims.iter().product(), bound);
        self.w.add_f32(name, dims, &values);
    }

    /// A weight over `fan_in` inputs whose outputs have a standard deviation of about `std` for
    /// inputs of unit variance (uniform in `±std·√(3/fan_in)`).
    pub(crate) fn matrix(&mut self, name: &str, dims: &[u64], fan_in: u64, std: f32) {
        self.small(name, dims, std * (3.0 / fan_in as f32).sqrt());
    }

    /// `<name>.weight` (`[n_in, n_out]`) and a small `<name>.bias`.
    pub(crate) fn linear(&mut self, name: &str, n_in: u64, n_out: u64, std: f32) {
        self.matrix(&format!("{name}.weight"), &[n_in, n_out], n_in, std);
        self.small(&format!("{name}.bias"), &[n_out], 0.02 * std);
    }

    /// Vision block `i` (`v.blk.{i}.*`) of width `e` and feed-forward width `f`: layer norms,
    /// separate Q/K/V and output projections and a two-layer feed-forward, all with biases.
    pub(crate) fn vit_block(&mut self, i: u64, e: u64, f: u64) {
        let b = format!("v.blk.{i}");
        self.norm(&format!("{b}.ln1"), e);
        for name in ["attn_q", "attn_k", "attn_v", "attn_out"] {
            self.linear(&format!("{b}.{name}"), e, e, 1.0);
        }
        self.norm(&format!("{b}.ln2"), e);
        self.linear(&format!("{b}.ffn_up"), e, f, 1.0);
        self.linear(&format!("{b}.ffn_down"), f, e, 1.0);
    }

    /// A layer norm: weights near one (not all equal), biases near zero.
    pub(crate) fn norm(&mut self, name: &str, n: u64) {
        let weight: Vec<f32> = self.uniform(n, 0.2).into_iter().map(|v| 1.0 + v).collect();
        self.w.add_f32(&format!("{name}.weight"), &[n], &weight);
        self.small(&format!("{name}.bias"), &[n], 0.02);
    }
}

/// A `width`×`height` RGB PNG whose picture depends on `seed`: a gradient between four random
/// corner colours with a little per-pixel noise, so that two seeds differ everywhere, also after a
/// projector shrinks them to a few patches.
pub fn png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    // Each row: filter type 0 (none), then its RGB triples.
    let row = 3 * width as usize;
    let mut raw = Vec::with_capacity(height as usize * (1 + row));
    for line in pixels(width, height, seed).chunks(row) {
        raw.push(0);
        raw.extend_from_slice(line);
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate compression, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);

    let mut out = PNG_SIGNATURE.to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// The RGB pixels of [`png`]'s picture, row after row from the top (for writing the same picture
/// in another format).
pub fn pixels(width: u32, height: u32, seed: u64) -> Vec<u8> {
    assert!(width > 0 && height > 0, "a picture has at least one pixel");
    let mut rng = StdRng::seed_from_u64(seed);
    let corners: [[f32; 3]; 4] = std::array::from_fn(|_| std::array::from_fn(|_| rng.gen_range(0.0..255.0)));
    let [top_left, top_right, bottom_left, bottom_right] = corners;
    let mix = |a: [f32; 3], b: [f32; 3], t: f32| -> [f32; 3] { std::array::from_fn(|c| a[c] * (1.0 - t) + b[c] * t) };
    let fraction = |i: u32, n: u32| if n > 1 { i as f32 / (n - 1) as f32 } else { 0.0 };
    let mut out = Vec::with_capacity(height as usize * 3 * width as usize);
    for y in 0..height {
        let fy = fraction(y, height);
        for x in 0..width {
            let fx = fraction(x, width);
            let colour = mix(mix(top_left, top_right, fx), mix(bottom_left, bottom_right, fx), fy);
            for v in colour {
                out.push((v + rng.gen_range(-12.0..12.0)).clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// The eight bytes every PNG file starts with.
pub const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Appends one PNG chunk: length, type, data, CRC-32 of type and data.
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of `data` in stored deflate blocks (no compression, at most 65535 bytes each).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    // CMF 0x78: deflate with a 32 KiB window; FLG 0x01 makes CMF·256 + FLG a multiple of 31.
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        let len = block.len() as u16;
        out.push(u8::from(last)); // BFINAL, BTYPE = 00 (stored)
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// CRC-32 (ISO-HDLC, the one PNG and zlib use), bit by bit: the pictures are small.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Adler-32, the checksum that ends a zlib stream.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projector_is_a_clip_file_as_wide_as_the_language_model() {
        for n_embd in [576, 896] {
            let bytes = tiny_vision_projector(n_embd, 7);
            let g = corral_gguf::read_bytes(&bytes).unwrap();
            assert_eq!(g.architecture(), Some("clip"));
            assert_eq!(g.get_str("clip.projector_type"), Some(PROJECTOR_TYPE));
            assert_eq!(g.get("clip.has_vision_encoder"), Some(&MetaValue::Bool(true)));
            assert_eq!(g.get_u64("clip.vision.image_size"), Some(u64::from(IMAGE_SIZE)));
            let dims = |name: &str| g.tensors.iter().find(|t| t.name == name).unwrap().dims.clone();
            // The last projection maps the hidden width to the language model's width.
            assert_eq!(dims("mm.2.weight"), vec![PROJECTOR_HIDDEN, n_embd]);
            assert_eq!(dims("mm.2.bias"), vec![n_embd]);
            assert_eq!(dims("v.position_embd.weight"), vec![VISION_EMBD, u64::from(IMAGE_TOKENS)]);
            assert_eq!(g.tensors.len(), 7 + 16 * VISION_BLOCKS as usize + 4);
        }
        assert_eq!(IMAGE_TOKENS, 16);
    }

    #[test]
    fn projector_is_deterministic_per_seed() {
        assert_eq!(tiny_vision_projector(576, 1), tiny_vision_projector(576, 1));
        assert_ne!(tiny_vision_projector(576, 1), tiny_vision_projector(576, 2));
    }

    /// Reads back the pixel rows of a PNG written by [`png`] (stored blocks only).
    fn inflate_stored(zlib: &[u8]) -> Vec<u8> {
        assert_eq!(&zlib[..2], &[0x78, 0x01]);
        let (mut pos, mut out) = (2, Vec::new());
        loop {
            let last = zlib[pos] & 1 == 1;
            assert_eq!(zlib[pos] >> 1, 0, "stored block");
            let len = u16::from_le_bytes([zlib[pos + 1], zlib[pos + 2]]) as usize;
            let nlen = u16::from_le_bytes([zlib[pos + 3], zlib[pos + 4]]);
            assert_eq!(!(len as u16), nlen);
            out.extend_from_slice(&zlib[pos + 5..pos + 5 + len]);
            pos += 5 + len;
            if last {
                break;
            }
        }
        assert_eq!(&zlib[pos..], &adler32(&out).to_be_bytes());
        out
    }

    #[test]
    fn png_has_signature_header_and_all_pixels() {
        // 200×120 RGB is 72,120 bytes of rows: two stored blocks.
        let bytes = png(200, 120, 3);
        assert_eq!(bytes[..8], PNG_SIGNATURE);
        assert_eq!(&bytes[8..16], &[0, 0, 0, 13, b'I', b'H', b'D', b'R']);
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 200);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 120);
        assert_eq!(&bytes[24..29], &[8, 2, 0, 0, 0]);
        assert_eq!(u32::from_be_bytes(bytes[29..33].try_into().unwrap()), crc32(&bytes[12..29]));
        let idat_len = u32::from_be_bytes(bytes[33..37].try_into().unwrap()) as usize;
        assert_eq!(&bytes[37..41], b"IDAT");
        let rows = inflate_stored(&bytes[41..41 + idat_len]);
        assert_eq!(rows.len(), 120 * (1 + 3 * 200));
        assert_eq!(&bytes[bytes.len() - 12..], &[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]);
        assert_eq!(png(200, 120, 3), bytes);
        assert_ne!(png(200, 120, 4), bytes);
    }

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }
}
