//! Tiny random-weight models of two architectures that Ollama published in a layout of its own,
//! each written twice: once the way llama.cpp's converter lays the file out, once the way Ollama's
//! converter did. Both copies hold the same tensors with the same bytes, drawn in the same order
//! from one seeded generator; only the names of the architecture, of some keys and of some tensors
//! differ. The tests of Corral's load-time translation (`corral-compat`) load both copies and expect
//! identical answers: the llama.cpp copy is the reference, and it must load on its own.
//!
//! - [`tiny_gpt_oss`]: gpt-oss, a mixture of experts with attention sinks, biases everywhere,
//!   alternating sliding-window and full attention, and YaRN RoPE. Ollama calls it `gptoss`, leaves
//!   out the expert width and the RoPE scaling type, and names three tensors differently.
//! - [`tiny_lfm2`]: LFM2, whose blocks are either short convolutions or attention (a per-block KV
//!   head count of zero marks a convolution). Ollama names its last norm `output_norm` and writes
//!   the feed-forward width from before the converter's automatic shrink.
//!
//! The models are small (64 wide, a few blocks) but shaped like the real ones, so llama.cpp runs
//! the same graph code it runs for the released models. A tokenizer's header supplies the
//! vocabulary (the tests use SmolLM2's); its `tokenizer.ggml.pre` is replaced with what each
//! layout writes. The file builder, `Model`, is shared with the fixtures of `random_arch2`.

use corral_gguf::{ArrayValue, Gguf, GgufWriter, MetaValue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Which converter's conventions a fixture follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// llama.cpp's own (`convert_hf_to_gguf.py`): loads without any translation.
    LlamaCpp,
    /// Ollama's, as served by its registry: needs the translation to load.
    Published,
}

/// A file under construction: the writer, the generator every weight comes from, the key prefix
/// of its architecture and the size of the copied vocabulary.
pub(crate) struct Model {
    pub(crate) w: GgufWriter,
    pub(crate) rng: StdRng,
    prefix: String,
    pub(crate) vocab: u64,
}

impl Model {
    /// Starts a file of architecture `arch` with every `tokenizer.*` key of `tokenizer`, its
    /// pre-tokenizer replaced by `pre` (left out when `None`).
    pub(crate) fn new(arch: &str, tokenizer: &Gguf, pre: Option<&str>, seed: u64) -> Model {
        let mut w = GgufWriter::new();
        w.set("general.architecture", MetaValue::String(arch.into()))
            .set("general.name", MetaValue::String("corral-tiny".into()))
            // Mostly Q8_0: the matrices are, the norms and biases are F32.
            .set("general.file_type", MetaValue::U32(7));
        let mut vocab = 0;
        let copied = |k: &str| k.starts_with("tokenizer.") && k != "tokenizer.ggml.pre";
        for (key, value) in tokenizer.metadata.iter().filter(|(k, _)| copied(k)) {
            if key == "tokenizer.ggml.tokens" {
                vocab = value.as_array().map_or(0, ArrayValue::len) as u64;
            }
            w.set(key, value.clone());
        }
        assert!(vocab > 0, "the tokenizer source has no tokens");
        if let Some(pre) = pre {
            w.set("tokenizer.ggml.pre", MetaValue::String(pre.into()));
        }
        Model { w, rng: StdRng::seed_from_u64(seed), prefix: arch.into(), vocab }
    }

    /// Sets `<arch>.<suffix>`.
    pub(crate) fn key(&mut self, suffix: &str, value: MetaValue) {
        self.w.set(&format!("{}.{suffix}", self.prefix), value);
    }

    pub(crate) fn u32(&mut self, suffix: &str, value: u64) {
        self.key(suffix, MetaValue::U32(value as u32));
    }

    pub(crate) fn f32(&mut self, suffix: &str, value: f32) {
        self.key(suffix, MetaValue::F32(value));
    }

    pub(crate) fn uniform(&mut self, n: u64, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.rng.gen_range(lo..hi)).collect()
    }

    /// A norm's weights: near one, but not all equal, so that swapping two norms would show.
    pub(crate) fn norm(&mut self, name: &str, n: u64) {
        let values = self.uniform(n, 0.8, 1.2);
        self.w.add_f32(name, &[n], &values);
    }

    /// An F32 tensor of values in `±scale` (biases, sinks, convolution kernels).
    pub(crate) fn small(&mut self, name: &str, dims: &[u64], scale: f32) {
        let values = self.uniform(dims.iter().product(), -scale, scale);
        self.w.add_f32(name, dims, &values);
    }

    /// A projection from `fan_in` inputs, scaled so its outputs keep about unit variance: Q8_0 for
    /// a matrix, F32 for a stack of experts.
    pub(crate) fn matrix(&mut self, name: &str, dims: &[u64]) {
        let bound = (3.0 / dims[0] as f32).sqrt();
        let values = self.uniform(dims.iter().product(), -bound, bound);
        if dims.len() == 2 {
            self.w.add_q8_0(name, dims, &values);
        } else {
            self.w.add_f32(name, dims, &values);
        }
    }

    /// Small F32 tensors of `(name, dims)`: the stand-in vision towers, projectors and MTP heads
    /// of published files, which the translation hides (drawn after the text weights, so those
    /// are the same in both layouts).
    pub(crate) fn stand_ins(&mut self, tensors: &[(&str, &[u64])]) {
        for (name, dims) in tensors {
            self.small(name, dims, 0.1);
        }
    }

    /// The token embeddings (values of about unit size, as a real model's are after its scaling).
    pub(crate) fn embeddings(&mut self, embd: u64) {
        let values = self.uniform(embd * self.vocab, -1.0, 1.0);
        self.w.add_q8_0("token_embd.weight", &[embd, self.vocab], &values);
    }

    /// The output head, untied: a tied one makes a random model repeat its last token.
    pub(crate) fn head(&mut self, embd: u64) {
        let vocab = self.vocab;
        self.matrix("output.weight", &[embd, vocab]);
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.w.to_bytes()
    }
}

// gpt-oss, at the scale of a test.
const OSS_EMBD: u64 = 64;
const OSS_BLOCKS: u64 = 2;
const OSS_HEADS: u64 = 4;
const OSS_KV_HEADS: u64 = 2;
const OSS_HEAD_DIM: u64 = 16;
const OSS_EXPERTS: u64 = 4;
const OSS_EXPERTS_USED: u64 = 2;
const OSS_EXPERT_FFN: u64 = 64;
const OSS_WINDOW: u64 = 128;
const OSS_CONTEXT: u64 = 2048;
/// YaRN stretches a shorter trained context by this factor, as in the released models.
const OSS_ROPE_FACTOR: f32 = 32.0;

/// A gpt-oss model with random weights in `layout`: every key llama.cpp's `gpt-oss` loader needs
/// (in llama.cpp's layout) or the subset Ollama wrote (published), the tokenizer of `tokenizer`,
/// and an untied output head. The two layouts of one `seed` hold the same weights.
pub fn tiny_gpt_oss(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let llama_cpp = layout == Layout::LlamaCpp;
    let (arch, pre) = if llama_cpp { ("gpt-oss", "gpt-4o") } else { ("gptoss", "default") };
    let mut m = Model::new(arch, tokenizer, Some(pre), seed);
    m.u32("context_length", OSS_CONTEXT);
    m.u32("embedding_length", OSS_EMBD);
    m.u32("block_count", OSS_BLOCKS);
    // Ollama writes the model's intermediate size here, which for gpt-oss is the expert width.
    m.u32("feed_forward_length", OSS_EXPERT_FFN);
    m.u32("expert_count", OSS_EXPERTS);
    m.u32("expert_used_count", OSS_EXPERTS_USED);
    m.u32("attention.head_count", OSS_HEADS);
    m.u32("attention.head_count_kv", OSS_KV_HEADS);
    m.u32("attention.key_length", OSS_HEAD_DIM);
    m.u32("attention.value_length", OSS_HEAD_DIM);
    m.f32("attention.layer_norm_rms_epsilon", 1e-5);
    m.u32("attention.sliding_window", OSS_WINDOW);
    m.f32("rope.freq_base", 150_000.0);
    m.f32("rope.scaling.factor", OSS_ROPE_FACTOR);
    m.u32("rope.scaling.original_context_length", OSS_CONTEXT / OSS_ROPE_FACTOR as u64);
    if llama_cpp {
        // What Ollama's file lacks: llama.cpp requires the first, and defaults the second to
        // linear scaling.
        m.u32("expert_feed_forward_length", OSS_EXPERT_FFN);
        m.key("rope.scaling.type", MetaValue::String("yarn".into()));
    }

    // The three tensor names that differ: (llama.cpp's, Ollama's) block-local stems.
    let (attn_out, sinks, post_norm) = if llama_cpp {
        ("attn_output", "attn_sinks.weight", "post_attention_norm")
    } else {
        ("attn_out", "attn_sinks", "ffn_norm")
    };
    let (q, kv) = (OSS_HEADS * OSS_HEAD_DIM, OSS_KV_HEADS * OSS_HEAD_DIM);
    let (e, ff, n) = (OSS_EMBD, OSS_EXPERT_FFN, OSS_EXPERTS);
    m.embeddings(e);
    for i in 0..OSS_BLOCKS {
        let b = |stem: &str| format!("blk.{i}.{stem}");
        m.norm(&b("attn_norm.weight"), e);
        for (stem, out) in [("attn_q", q), ("attn_k", kv), ("attn_v", kv)] {
            m.matrix(&b(&format!("{stem}.weight")), &[e, out]);
            m.small(&b(&format!("{stem}.bias")), &[out], 0.1);
        }
        m.matrix(&b(&format!("{attn_out}.weight")), &[q, e]);
        m.small(&b(&format!("{attn_out}.bias")), &[e], 0.1);
        // One learned logit per head that the softmax also normalises over.
        m.small(&b(sinks), &[OSS_HEADS], 1.0);
        m.norm(&b(&format!("{post_norm}.weight")), e);
        m.matrix(&b("ffn_gate_inp.weight"), &[e, n]);
        m.small(&b("ffn_gate_inp.bias"), &[n], 0.1);
        m.matrix(&b("ffn_gate_exps.weight"), &[e, ff, n]);
        m.small(&b("ffn_gate_exps.bias"), &[ff, n], 0.1);
        m.matrix(&b("ffn_up_exps.weight"), &[e, ff, n]);
        m.small(&b("ffn_up_exps.bias"), &[ff, n], 0.1);
        m.matrix(&b("ffn_down_exps.weight"), &[ff, e, n]);
        m.small(&b("ffn_down_exps.bias"), &[e, n], 0.1);
    }
    m.norm("output_norm.weight", e);
    m.head(e);
    m.finish()
}

// LFM2, at the scale of a test.
const LFM_EMBD: u64 = 64;
const LFM_HEADS: u64 = 4;
const LFM_KV_HEADS: u64 = 2;
const LFM_FFN: u64 = 128;
/// The convolution's length (the kernel covers this many positions, the current one included).
const LFM_CONV: u64 = 3;
const LFM_CONTEXT: u64 = 2048;
/// Which blocks attend (the others convolve), in the released models' proportions.
const LFM_ATTENTION: [bool; 4] = [false, true, false, true];

/// An LFM2 model with random weights in `layout`: short-convolution and attention blocks mixed
/// (per-block KV head counts, zero for a convolution), dense SwiGLU feed-forwards, and an untied
/// output head. In llama.cpp's layout the final norm is `token_embd_norm.weight` and the
/// feed-forward width is the tensors'; in the published one the norm is `output_norm.weight` and
/// the width is the configuration's before the converter shrank it (here half as wide again).
/// The two layouts of one `seed` hold the same weights.
pub fn tiny_lfm2(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let llama_cpp = layout == Layout::LlamaCpp;
    let pre = if llama_cpp { "lfm2" } else { "default" };
    let mut m = Model::new("lfm2", tokenizer, Some(pre), seed);
    let (e, head_dim, blocks) = (LFM_EMBD, LFM_EMBD / LFM_HEADS, LFM_ATTENTION.len() as u64);
    let vocab = m.vocab;
    m.u32("vocab_size", vocab);
    m.u32("context_length", LFM_CONTEXT);
    m.u32("embedding_length", e);
    m.u32("block_count", blocks);
    m.u32("feed_forward_length", if llama_cpp { LFM_FFN } else { LFM_FFN * 3 / 2 });
    m.u32("attention.head_count", LFM_HEADS);
    let kv_heads: Vec<u32> = LFM_ATTENTION.iter().map(|a| if *a { LFM_KV_HEADS as u32 } else { 0 }).collect();
    m.key("attention.head_count_kv", MetaValue::Array(ArrayValue::U32(kv_heads)));
    m.u32("attention.key_length", head_dim);
    m.u32("attention.value_length", head_dim);
    m.f32("attention.layer_norm_rms_epsilon", 1e-5);
    m.u32("shortconv.l_cache", LFM_CONV);
    m.f32("rope.freq_base", 1_000_000.0);

    m.embeddings(e);
    for (i, attends) in LFM_ATTENTION.iter().enumerate() {
        let b = |stem: &str| format!("blk.{i}.{stem}");
        m.norm(&b("attn_norm.weight"), e);
        if *attends {
            let kv = LFM_KV_HEADS * head_dim;
            m.norm(&b("attn_q_norm.weight"), head_dim);
            m.norm(&b("attn_k_norm.weight"), head_dim);
            m.matrix(&b("attn_q.weight"), &[e, e]);
            m.matrix(&b("attn_k.weight"), &[e, kv]);
            m.matrix(&b("attn_v.weight"), &[e, kv]);
            m.matrix(&b("attn_output.weight"), &[e, e]);
        } else {
            // The input projection gives the two gates and the convolved signal, side by side.
            m.matrix(&b("shortconv.in_proj.weight"), &[e, 3 * e]);
            m.small(&b("shortconv.conv.weight"), &[LFM_CONV, e], 0.5);
            m.matrix(&b("shortconv.out_proj.weight"), &[e, e]);
        }
        m.norm(&b("ffn_norm.weight"), e);
        m.matrix(&b("ffn_gate.weight"), &[e, LFM_FFN]);
        m.matrix(&b("ffn_up.weight"), &[e, LFM_FFN]);
        m.matrix(&b("ffn_down.weight"), &[LFM_FFN, e]);
    }
    m.norm(if llama_cpp { "token_embd_norm.weight" } else { "output_norm.weight" }, e);
    m.head(e);
    m.finish()
}

/// What the fixture modules' own tests share.
#[cfg(test)]
pub(crate) mod testing {
    use corral_gguf::{Gguf, TensorInfo};

    use super::Layout;

    pub(crate) type Fixture = fn(Layout, &Gguf, u64) -> Vec<u8>;

    /// The bytes of tensor `t` in `bytes`, the file whose header is `g`.
    pub(crate) fn data<'a>(g: &Gguf, bytes: &'a [u8], t: &TensorInfo) -> &'a [u8] {
        let start = (g.data_offset + t.offset) as usize;
        &bytes[start..start + t.size as usize]
    }

    /// Tensor `name` of `g`; panics naming it when it is missing.
    pub(crate) fn find<'a>(g: &'a Gguf, name: &str) -> &'a TensorInfo {
        g.tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no {name}"))
    }

    /// Both layouts of `make` hold the same weights: every tensor of the reference is in the
    /// published copy under its name there (`renames`: substrings of llama.cpp's names and
    /// Ollama's), with the same shape, type and bytes, except `grown`, whose published copy has
    /// more rows that start with the reference's. The published copy's other tensors start with
    /// one of `hidden`, and there are some exactly when `hidden` names any.
    pub(crate) fn assert_same_weights(make: Fixture, renames: &[(&str, &str)], hidden: &[&str], grown: Option<&str>) {
        let tok = crate::letters_tokenizer("abcdefgh");
        let (a, b) = (make(Layout::LlamaCpp, &tok, 5), make(Layout::Published, &tok, 5));
        let (ga, gb) = (corral_gguf::read_bytes(&a).unwrap(), corral_gguf::read_bytes(&b).unwrap());
        let mut matched = Vec::new();
        for x in &ga.tensors {
            let name = renames.iter().fold(x.name.clone(), |n, (from, to)| n.replace(from, to));
            let y =
                gb.tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no {name} in the published copy"));
            let (dx, dy) = (data(&ga, &a, x), data(&gb, &b, y));
            if grown == Some(x.name.as_str()) {
                assert!(x.dims[0] == y.dims[0] && y.dims[1] > x.dims[1], "{}", x.name);
                assert_eq!(dx, &dy[..dx.len()], "{}", x.name);
            } else {
                assert_eq!((&x.dims, x.kind), (&y.dims, y.kind), "{}", x.name);
                assert_eq!(dx, dy, "{}", x.name);
            }
            matched.push(name);
        }
        let rest: Vec<&str> =
            gb.tensors.iter().map(|t| t.name.as_str()).filter(|n| !matched.iter().any(|m| m == n)).collect();
        assert!(rest.iter().all(|n| hidden.iter().any(|p| n.starts_with(p))), "{rest:?}");
        assert_eq!(rest.is_empty(), hidden.is_empty(), "{rest:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(bytes: &[u8]) -> Vec<String> {
        let g = corral_gguf::read_bytes(bytes).unwrap();
        let mut names: Vec<String> = g.tensors.iter().map(|t| t.name.clone()).collect();
        names.sort();
        names
    }

    #[test]
    fn both_layouts_hold_the_same_bytes() {
        let oss = [
            (".attn_output", ".attn_out"),
            (".attn_sinks.weight", ".attn_sinks"),
            (".post_attention_norm", ".ffn_norm"),
        ];
        testing::assert_same_weights(tiny_gpt_oss, &oss, &[], None);
        testing::assert_same_weights(tiny_lfm2, &[("token_embd_norm", "output_norm")], &[], None);
    }

    #[test]
    fn published_names_are_ollamas() {
        let tok = crate::letters_tokenizer("abcdefgh");
        let oss = names(&tiny_gpt_oss(Layout::Published, &tok, 1));
        for name in ["blk.0.attn_out.weight", "blk.0.attn_out.bias", "blk.1.attn_sinks", "blk.1.ffn_norm.weight"] {
            assert!(oss.contains(&name.to_string()), "{name}");
        }
        let g = corral_gguf::read_bytes(&tiny_gpt_oss(Layout::Published, &tok, 1)).unwrap();
        assert_eq!(g.architecture(), Some("gptoss"));
        assert!(g.get("gptoss.expert_feed_forward_length").is_none());
        assert!(g.get("gptoss.rope.scaling.type").is_none());
        assert_eq!(g.get_str("tokenizer.ggml.pre"), Some("default"));
        let lfm = names(&tiny_lfm2(Layout::Published, &tok, 1));
        assert!(lfm.contains(&"output_norm.weight".to_string()));
        assert!(!lfm.contains(&"token_embd_norm.weight".to_string()));
    }
}
