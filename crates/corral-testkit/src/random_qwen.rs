//! Tiny random-weight Qwen models whose published files differ from what llama.cpp's converter
//! writes, each in both layouts (the scheme of `random_arch`: one seeded generator, the text
//! tensors drawn in the same order with the same bytes in both copies, and the llama.cpp copy as
//! the reference that must load on its own).
//!
//! - [`tiny_qwen25vl`]: Qwen2.5-VL's text model, Qwen 2 attention (biased Q/K/V) with multi-axis
//!   RoPE. Ollama names the architecture `qwen25vl` and writes three RoPE sections as
//!   `rope.mrope_section`; llama.cpp loads the family as `qwen2vl` with four sections under
//!   `rope.dimension_sections`. The published copy also carries a whole vision tower
//!   (`crate::published_qwen`).
//! - [`tiny_qwen35`]: Qwen 3.5 (dense), a hybrid of gated delta-net blocks (a recurrent linear
//!   attention with a short convolution) and gated full-attention blocks, one in every
//!   `full_attention_interval`. Ollama writes the KV head count per block (0 for a delta-net
//!   block), three interleaved-RoPE sections, `ssm_dt` without its `.bias` suffix, some markers of
//!   its own, and keeps the vision tower and the multi-token-prediction head in the file.
//! - [`tiny_qwen3next`]: Qwen3-Next, the same hybrid with a mixture of experts plus a shared
//!   expert in every block and ordinary RoPE. The published copy differs only in the per-block KV
//!   head counts and the `ssm_dt` name.
//! - [`tiny_qwen35moe`]: Qwen 3.5 MoE, the Qwen 3.5 hybrid with Qwen3-Next's experts. It is
//!   published as the dense one is, plus a `feed_forward_length` that llama.cpp's converter does
//!   not write (the marker Ollama's handler looks for), and an MTP layer with experts.
//! - [`tiny_qwen3vlmoe`]: Qwen3-VL MoE's text model, Qwen 3 attention with interleaved
//!   multi-axis RoPE and experts without a shared one. The published copy lacks the RoPE
//!   sections and deepstack count llama.cpp needs, and carries the vision keys and tensors.
//!
//! The stand-ins for what the other published files hold beside the text model (`v.*`, `mm.*`,
//! `mtp.*`) are a few small F32 tensors drawn after every text tensor.

use corral_gguf::{ArrayValue, Gguf, MetaValue};

use crate::random_arch::{Layout, Model};

fn i32_array(values: &[i32]) -> MetaValue {
    MetaValue::Array(ArrayValue::I32(values.to_vec()))
}

/// The RoPE sections of a file: llama.cpp's four (the last, unused by text, is 0), or the three
/// Ollama wrote.
fn sections(layout: Layout, three: [i32; 3]) -> MetaValue {
    match layout {
        Layout::LlamaCpp => i32_array(&[three[0], three[1], three[2], 0]),
        Layout::Published => i32_array(&three),
    }
}

/// A dense SwiGLU feed-forward.
fn swiglu(m: &mut Model, i: usize, e: u64, ff: u64) {
    m.matrix(&format!("blk.{i}.ffn_gate.weight"), &[e, ff]);
    m.matrix(&format!("blk.{i}.ffn_up.weight"), &[e, ff]);
    m.matrix(&format!("blk.{i}.ffn_down.weight"), &[ff, e]);
}

// Qwen2.5-VL, at the scale of a test: a 32-wide head, which the sections below cover (16 pairs).
const Q25_EMBD: u64 = 128;
const Q25_BLOCKS: usize = 2;
const Q25_HEADS: u64 = 4;
const Q25_KV_HEADS: u64 = 2;
const Q25_FFN: u64 = 256;
const Q25_CONTEXT: u64 = 4096;
/// Rotary pairs per position axis (time, height, width), in the released models' proportions
/// (16, 24, 24 of a 128-wide head).
const Q25_SECTIONS: [i32; 3] = [4, 6, 6];

/// A Qwen2.5-VL text model with random weights in `layout`: Qwen 2 attention with Q/K/V biases,
/// dense SwiGLU feed-forwards, an untied output head. llama.cpp's layout is architecture
/// `qwen2vl` with `rope.dimension_sections`; the published one is `qwen25vl` with
/// `rope.mrope_section` and a whole random vision tower ([`crate::QWEN25VL_TOWER`]: its
/// `vision.*` keys and `v.*` tensors, which llama.cpp's layout keeps in a separate projector,
/// [`crate::qwen25vl_reference_projector`]).
pub fn tiny_qwen25vl(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let llama_cpp = layout == Layout::LlamaCpp;
    let arch = if llama_cpp { "qwen2vl" } else { "qwen25vl" };
    let mut m = Model::new(arch, tokenizer, Some("qwen2"), seed);
    let e = Q25_EMBD;
    let kv = Q25_KV_HEADS * (e / Q25_HEADS);
    m.u32("context_length", Q25_CONTEXT);
    m.u32("embedding_length", e);
    m.u32("block_count", Q25_BLOCKS as u64);
    m.u32("feed_forward_length", Q25_FFN);
    m.u32("attention.head_count", Q25_HEADS);
    m.u32("attention.head_count_kv", Q25_KV_HEADS);
    m.f32("attention.layer_norm_rms_epsilon", 1e-6);
    m.f32("rope.freq_base", 1_000_000.0);
    if llama_cpp {
        m.key("rope.dimension_sections", sections(layout, Q25_SECTIONS));
    } else {
        m.key("rope.mrope_section", sections(layout, Q25_SECTIONS));
    }

    m.embeddings(e);
    for i in 0..Q25_BLOCKS {
        let b = |stem: &str| format!("blk.{i}.{stem}");
        m.norm(&b("attn_norm.weight"), e);
        for (stem, out) in [("attn_q", e), ("attn_k", kv), ("attn_v", kv)] {
            m.matrix(&b(&format!("{stem}.weight")), &[e, out]);
            m.small(&b(&format!("{stem}.bias")), &[out], 0.1);
        }
        m.matrix(&b("attn_output.weight"), &[e, e]);
        m.norm(&b("ffn_norm.weight"), e);
        swiglu(&mut m, i, e, Q25_FFN);
    }
    m.norm("output_norm.weight", e);
    m.head(e);
    if !llama_cpp {
        // After every text tensor, from a generator of its own: the same tower for every seed.
        crate::published_qwen::add_published_qwen25vl_tower(&mut m.w, e);
    }
    m.finish()
}

/// The shape of a hybrid model's blocks, shared by Qwen 3.5 and Qwen3-Next (at a test's scale).
struct Hybrid {
    embd: u64,
    /// Which blocks attend; the others are gated delta-nets.
    attends: &'static [bool],
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    /// Rotary dimensions of a head: a quarter of it, as in the released models.
    rope_dims: u64,
    /// Delta-net key heads (`ssm.group_count`) and value heads (`ssm.time_step_rank`), all
    /// `state` wide (`ssm.state_size`).
    k_heads: u64,
    v_heads: u64,
    state: u64,
    /// The short convolution's length (`ssm.conv_kernel`).
    conv: u64,
}

/// Both hybrids: every other block attends (the released models attend in one of four), the
/// delta-nets have twice as many value heads as key heads, as the released ones do.
const HYBRID: Hybrid = Hybrid {
    embd: 64,
    attends: &[false, true],
    heads: 4,
    kv_heads: 2,
    head_dim: 64,
    rope_dims: 16,
    k_heads: 2,
    v_heads: 4,
    state: 16,
    conv: 4,
};

impl Hybrid {
    fn value_dim(&self) -> u64 {
        self.v_heads * self.state
    }

    /// The keys both hybrids have in both layouts, but the KV head count: block count, widths,
    /// the delta-net's shape and where the attention blocks are.
    fn keys(&self, m: &mut Model, context: u64) {
        m.u32("context_length", context);
        m.u32("embedding_length", self.embd);
        m.u32("block_count", self.attends.len() as u64);
        m.u32("attention.head_count", self.heads);
        m.u32("attention.key_length", self.head_dim);
        m.u32("attention.value_length", self.head_dim);
        m.f32("attention.layer_norm_rms_epsilon", 1e-6);
        m.u32("rope.dimension_count", self.rope_dims);
        m.f32("rope.freq_base", 10_000_000.0);
        m.u32("ssm.conv_kernel", self.conv);
        m.u32("ssm.state_size", self.state);
        m.u32("ssm.group_count", self.k_heads);
        m.u32("ssm.time_step_rank", self.v_heads);
        m.u32("ssm.inner_size", self.value_dim());
        let interval = self.attends.iter().position(|a| *a).expect("a hybrid attends somewhere") + 1;
        m.u32("full_attention_interval", interval as u64);
    }

    /// The KV head count: one number for llama.cpp, one per block for Ollama (0 where the block
    /// is a delta-net).
    fn kv_heads_key(&self, m: &mut Model, layout: Layout) {
        match layout {
            Layout::LlamaCpp => m.u32("attention.head_count_kv", self.kv_heads),
            Layout::Published => {
                let per_block = self.attends.iter().map(|a| if *a { self.kv_heads as u32 } else { 0 }).collect();
                m.key("attention.head_count_kv", MetaValue::Array(ArrayValue::U32(per_block)));
            }
        }
    }

    /// A full-attention block's attention: the query projection yields the query and a sigmoid
    /// gate for the output side by side; per-head Q and K norms.
    fn attention(&self, m: &mut Model, i: usize) {
        let b = |stem: &str| format!("blk.{i}.{stem}");
        let (e, q, kv) = (self.embd, self.heads * self.head_dim, self.kv_heads * self.head_dim);
        m.norm(&b("attn_q_norm.weight"), self.head_dim);
        m.norm(&b("attn_k_norm.weight"), self.head_dim);
        m.matrix(&b("attn_q.weight"), &[e, 2 * q]);
        m.matrix(&b("attn_k.weight"), &[e, kv]);
        m.matrix(&b("attn_v.weight"), &[e, kv]);
        m.matrix(&b("attn_output.weight"), &[q, e]);
    }

    /// A delta-net block's mixer. `split_beta_alpha`: Qwen 3.5's separate `ssm_beta` and
    /// `ssm_alpha` projections rather than Qwen3-Next's joint `ssm_ba`. The time-step bias is
    /// `ssm_dt.bias` in llama.cpp's layout and `ssm_dt` in Ollama's.
    fn delta_net(&self, m: &mut Model, i: usize, layout: Layout, split_beta_alpha: bool) {
        let b = |stem: &str| format!("blk.{i}.{stem}");
        let (e, v) = (self.embd, self.value_dim());
        let conv_channels = 2 * self.k_heads * self.state + v;
        // Q, K and V of every head, convolved together; the output gate apart.
        m.matrix(&b("attn_qkv.weight"), &[e, conv_channels]);
        m.matrix(&b("attn_gate.weight"), &[e, v]);
        m.small(&b("ssm_conv1d.weight"), &[self.conv, conv_channels], 0.5);
        let dt = if layout == Layout::LlamaCpp { "ssm_dt.bias" } else { "ssm_dt" };
        m.small(&b(dt), &[self.v_heads], 0.5);
        // `-exp(A_log)`: negative, so that the state decays.
        let decay = m.uniform(self.v_heads, -1.0, -0.1);
        m.w.add_f32(&b("ssm_a"), &[self.v_heads], &decay);
        if split_beta_alpha {
            m.matrix(&b("ssm_beta.weight"), &[e, self.v_heads]);
            m.matrix(&b("ssm_alpha.weight"), &[e, self.v_heads]);
        } else {
            m.matrix(&b("ssm_ba.weight"), &[e, 2 * self.v_heads]);
        }
        m.norm(&b("ssm_norm.weight"), self.state);
        m.matrix(&b("ssm_out.weight"), &[v, e]);
    }

    /// Every block, with `ffn` writing each block's feed-forward; then the final norm and head.
    fn blocks(&self, m: &mut Model, layout: Layout, split_beta_alpha: bool, ffn: impl Fn(&mut Model, usize)) {
        let e = self.embd;
        m.embeddings(e);
        for (i, attends) in self.attends.iter().enumerate() {
            m.norm(&format!("blk.{i}.attn_norm.weight"), e);
            if *attends {
                self.attention(m, i);
            } else {
                self.delta_net(m, i, layout, split_beta_alpha);
            }
            m.norm(&format!("blk.{i}.post_attention_norm.weight"), e);
            ffn(m, i);
        }
        m.norm("output_norm.weight", e);
        m.head(e);
    }
}

// Qwen 3.5, at the scale of a test.
const Q35_FFN: u64 = 128;
const Q35_CONTEXT: u64 = 4096;
/// Interleaved-RoPE pairs per position axis, in the released models' proportions (11, 11, 10 of
/// 32 pairs); they cover `rope.dimension_count`.
const Q35_SECTIONS: [i32; 3] = [3, 3, 2];

/// The keys of a Qwen 3.5 file (dense or MoE) but its feed-forward's: the hybrid's, the KV head
/// count and the RoPE sections as `layout` writes them, and in the published layout Ollama's
/// markers and vision keys.
fn qwen35_keys(m: &mut Model, h: &Hybrid, layout: Layout) {
    h.keys(m, Q35_CONTEXT);
    h.kv_heads_key(m, layout);
    m.key("rope.dimension_sections", sections(layout, Q35_SECTIONS));
    if layout == Layout::Published {
        m.key("ssm.v_head_reordered", MetaValue::Bool(true));
        m.key("rope.mrope_interleaved", MetaValue::Bool(true));
        m.u32("image_token_id", 10);
        m.u32("vision.block_count", 2);
        m.u32("vision.embedding_length", 16);
        m.u32("vision.attention.head_count", 2);
        m.u32("vision.patch_size", 16);
        m.u32("vision.spatial_merge_size", 2);
    }
}

/// What a published Qwen 3.5 file holds beside the text model: a piece of the vision tower, the
/// projector and one MTP layer (a full-attention block fed by the hidden state and the next
/// token's embedding, fused by `fc`), whose feed-forward ends in `mtp_ffn`.
fn qwen35_stand_ins(m: &mut Model, h: &Hybrid, mtp_ffn: (&str, &[u64])) {
    let e = h.embd;
    m.stand_ins(&[
        ("v.patch_embd.weight", &[16, 16, 3, 16]),
        ("v.blk.0.attn_qkv.weight", &[16, 48]),
        ("v.post_ln.weight", &[16]),
        ("mm.0.weight", &[64, 64]),
        ("mm.2.weight", &[64, e]),
        ("mtp.fc.weight", &[2 * e, e]),
        ("mtp.pre_fc_norm_embedding.weight", &[e]),
        ("mtp.pre_fc_norm_hidden.weight", &[e]),
        ("mtp.layers.0.attn_norm.weight", &[e]),
        ("mtp.layers.0.attn_q.weight", &[e, 2 * h.heads * h.head_dim]),
        mtp_ffn,
        ("mtp.norm.weight", &[e]),
    ]);
}

/// A Qwen 3.5 (dense) model with random weights in `layout`: delta-net and gated-attention blocks
/// (see [`HYBRID`]), dense SwiGLU feed-forwards, an untied output head. llama.cpp's layout has
/// one KV head count, four RoPE sections and `ssm_dt.bias`, and no MTP head (its converter can
/// leave it out). The published one has a KV head count per block, three sections, `ssm_dt`,
/// `ssm.v_head_reordered`, `rope.mrope_interleaved`, the vision keys, and `v.*`, `mm.*` and
/// `mtp.*` tensors.
pub fn tiny_qwen35(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let h = &HYBRID;
    let mut m = Model::new("qwen35", tokenizer, Some("qwen35"), seed);
    qwen35_keys(&mut m, h, layout);
    m.u32("feed_forward_length", Q35_FFN);
    h.blocks(&mut m, layout, true, |m, i| swiglu(m, i, h.embd, Q35_FFN));
    if layout == Layout::Published {
        qwen35_stand_ins(&mut m, h, ("mtp.layers.0.ffn_down.weight", &[Q35_FFN, h.embd]));
    }
    m.finish()
}

/// A mixture of experts at the scale of a test, with a sigmoid-gated shared expert when `shared`
/// is not 0.
struct Experts {
    count: u64,
    used: u64,
    /// Each expert's hidden width (`expert_feed_forward_length`).
    ffn: u64,
    /// The shared expert's hidden width (`expert_shared_feed_forward_length`), or 0 for none.
    shared: u64,
}

/// The hybrids' experts: four, two of them used per token, and a shared one.
const HYBRID_EXPERTS: Experts = Experts { count: 4, used: 2, ffn: 64, shared: 64 };

impl Experts {
    fn keys(&self, m: &mut Model) {
        m.u32("expert_count", self.count);
        m.u32("expert_used_count", self.used);
        m.u32("expert_feed_forward_length", self.ffn);
        if self.shared > 0 {
            m.u32("expert_shared_feed_forward_length", self.shared);
        }
    }

    /// Block `i`'s router, the experts stacked along a third axis, then the shared expert.
    fn tensors(&self, m: &mut Model, i: usize, e: u64) {
        let b = |stem: &str| format!("blk.{i}.{stem}");
        let (n, ff, shared) = (self.count, self.ffn, self.shared);
        m.matrix(&b("ffn_gate_inp.weight"), &[e, n]);
        m.matrix(&b("ffn_gate_exps.weight"), &[e, ff, n]);
        m.matrix(&b("ffn_up_exps.weight"), &[e, ff, n]);
        m.matrix(&b("ffn_down_exps.weight"), &[ff, e, n]);
        if shared > 0 {
            // The shared expert's gate is one logit: a vector, not a matrix.
            m.small(&b("ffn_gate_inp_shexp.weight"), &[e], 0.2);
            m.matrix(&b("ffn_gate_shexp.weight"), &[e, shared]);
            m.matrix(&b("ffn_up_shexp.weight"), &[e, shared]);
            m.matrix(&b("ffn_down_shexp.weight"), &[shared, e]);
        }
    }
}

/// A Qwen 3.5 MoE model with random weights in `layout`: the dense model's blocks and published
/// differences (see [`tiny_qwen35`]), with [`HYBRID_EXPERTS`] for feed-forwards. The published
/// copy also has `feed_forward_length`, which llama.cpp's converter does not write for this
/// architecture (Ollama's handler takes it as a marker); its MTP layer has experts too.
pub fn tiny_qwen35moe(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let (h, x) = (&HYBRID, &HYBRID_EXPERTS);
    let mut m = Model::new("qwen35moe", tokenizer, Some("qwen35"), seed);
    qwen35_keys(&mut m, h, layout);
    x.keys(&mut m);
    h.blocks(&mut m, layout, true, |m, i| x.tensors(m, i, h.embd));
    if layout == Layout::Published {
        m.u32("feed_forward_length", x.ffn);
        // Ollama keeps the MTP layer's experts one tensor each.
        qwen35_stand_ins(&mut m, h, ("mtp.layers.0.mlp.experts.0.down_proj.weight", &[x.ffn, h.embd]));
    }
    m.finish()
}

const Q3N_CONTEXT: u64 = 4096;

/// A Qwen3-Next model with random weights in `layout`: delta-net and gated-attention blocks (see
/// [`HYBRID`]), each followed by [`HYBRID_EXPERTS`], and an untied output head. llama.cpp's
/// layout has one KV head count and `ssm_dt.bias`; the published one a KV head count per block
/// and `ssm_dt`.
pub fn tiny_qwen3next(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let (h, x) = (&HYBRID, &HYBRID_EXPERTS);
    let mut m = Model::new("qwen3next", tokenizer, Some("qwen2"), seed);
    h.keys(&mut m, Q3N_CONTEXT);
    h.kv_heads_key(&mut m, layout);
    m.u32("feed_forward_length", x.ffn);
    x.keys(&mut m);
    h.blocks(&mut m, layout, false, |m, i| x.tensors(m, i, h.embd));
    m.finish()
}

/// Qwen3-VL MoE's experts, without a shared one, as in the released models; its attention and
/// published differences are Qwen3-VL's ([`crate::tiny_qwen3vl`]).
const QVM_EXPERTS: Experts = Experts { count: 4, used: 2, ffn: 64, shared: 0 };
const QVM_EMBD: u64 = 128;

/// A Qwen3-VL MoE model with random weights in `layout`: Qwen3-VL's blocks (per-head Q and K
/// norms, its published differences) with a mixture of experts in each.
pub fn tiny_qwen3vlmoe(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let x = &QVM_EXPERTS;
    crate::random_arch2::qwen3vl(
        "qwen3vlmoe",
        layout,
        tokenizer,
        seed,
        QVM_EMBD,
        |m| x.keys(m),
        |m, i| x.tensors(m, i as usize, QVM_EMBD),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random_arch::testing::{assert_same_weights, Fixture};

    #[test]
    fn text_tensors_are_the_same_in_both_layouts() {
        let dt = [(".ssm_dt.bias", ".ssm_dt")];
        assert_same_weights(tiny_qwen25vl, &[], &["v.", "mm."], None);
        assert_same_weights(tiny_qwen35, &dt, &["v.", "mm.", "mtp."], None);
        assert_same_weights(tiny_qwen3next, &dt, &[], None);
        assert_same_weights(tiny_qwen35moe, &dt, &["v.", "mm.", "mtp."], None);
        assert_same_weights(tiny_qwen3vlmoe, &[], &["v.", "mm."], None);
    }

    #[test]
    fn published_keys_are_ollamas() {
        let tok = crate::letters_tokenizer("abcdefgh");
        let read = |bytes: Vec<u8>| corral_gguf::read_bytes(&bytes).unwrap();

        let vl = read(tiny_qwen25vl(Layout::Published, &tok, 1));
        assert_eq!(vl.architecture(), Some("qwen25vl"));
        assert_eq!(vl.get("qwen25vl.rope.mrope_section"), Some(&i32_array(&Q25_SECTIONS)));
        let reference = read(tiny_qwen25vl(Layout::LlamaCpp, &tok, 1));
        assert_eq!(reference.architecture(), Some("qwen2vl"));
        assert_eq!(reference.get("qwen2vl.rope.dimension_sections"), Some(&i32_array(&[4, 6, 6, 0])));

        let hybrids =
            [(tiny_qwen35 as Fixture, "qwen35"), (tiny_qwen3next, "qwen3next"), (tiny_qwen35moe, "qwen35moe")];
        for (make, arch) in hybrids {
            let published = read(make(Layout::Published, &tok, 1));
            let reference = read(make(Layout::LlamaCpp, &tok, 1));
            let kv = format!("{arch}.attention.head_count_kv");
            assert_eq!(published.get(&kv), Some(&MetaValue::Array(ArrayValue::U32(vec![0, 2]))));
            assert_eq!(reference.get(&kv), Some(&MetaValue::U32(2)));
            assert!(published.tensors.iter().any(|t| t.name == "blk.0.ssm_dt"));
            assert!(reference.tensors.iter().any(|t| t.name == "blk.0.ssm_dt.bias"));
        }
        let q35 = read(tiny_qwen35(Layout::Published, &tok, 1));
        assert_eq!(q35.get("qwen35.rope.dimension_sections"), Some(&i32_array(&Q35_SECTIONS)));
        assert_eq!(q35.get("qwen35.ssm.v_head_reordered"), Some(&MetaValue::Bool(true)));

        // Only Ollama writes a Qwen 3.5 MoE's `feed_forward_length`.
        let moe = read(tiny_qwen35moe(Layout::Published, &tok, 1));
        assert_eq!(moe.arch_u64("feed_forward_length"), Some(HYBRID_EXPERTS.ffn));
        assert_eq!(moe.get("qwen35moe.rope.dimension_sections"), Some(&i32_array(&Q35_SECTIONS)));
        let reference = read(tiny_qwen35moe(Layout::LlamaCpp, &tok, 1));
        assert_eq!(reference.arch_u64("feed_forward_length"), None);
        assert_eq!(reference.arch_u64("expert_count"), Some(HYBRID_EXPERTS.count));

        let vlmoe = read(tiny_qwen3vlmoe(Layout::Published, &tok, 1));
        assert_eq!(vlmoe.get("qwen3vlmoe.rope.dimension_sections"), None);
        assert_eq!(vlmoe.get("qwen3vlmoe.n_deepstack_layers"), None);
        let reference = read(tiny_qwen3vlmoe(Layout::LlamaCpp, &tok, 1));
        assert_eq!(reference.arch_u64("n_deepstack_layers"), Some(1));
        assert!(reference.get("qwen3vlmoe.expert_shared_feed_forward_length").is_none());
    }
}
