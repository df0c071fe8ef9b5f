//! Each handler on headers built here (no tensor data): what it detects, what it edits, and
//! that files already in llama.cpp's layout are left alone.

use corral_gguf::{ArrayValue, GgmlType, Gguf, MetaValue, TensorInfo};

use crate::{enabled, translate, Edit, Translation};

fn header(kvs: Vec<(&str, MetaValue)>, tensors: &[(&str, &[u64])]) -> Gguf {
    let mut offset = 0;
    let tensors = tensors
        .iter()
        .map(|(name, dims)| {
            let size = dims.iter().product::<u64>() * 4;
            let t = TensorInfo { name: name.to_string(), dims: dims.to_vec(), kind: GgmlType::F32, offset, size };
            offset += size.div_ceil(32) * 32;
            t
        })
        .collect();
    Gguf {
        version: 3,
        metadata: kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        tensors,
        alignment: 32,
        data_offset: 4096,
    }
}

fn s(v: &str) -> MetaValue {
    MetaValue::String(v.into())
}

fn strings(n: usize) -> MetaValue {
    MetaValue::Array(ArrayValue::String((0..n).map(|i| format!("t{i}")).collect()))
}

fn set_value<'a>(t: &'a Translation, key: &str) -> Option<&'a MetaValue> {
    t.edits.iter().rev().find_map(|e| match e {
        Edit::Set(k, v) if k == key => Some(v),
        _ => None,
    })
}

fn names(g: &Gguf) -> Vec<&str> {
    g.tensors.iter().map(|t| t.name.as_str()).collect()
}

#[test]
fn files_in_llama_cpp_layout_are_left_alone() {
    let tiny = corral_testkit::tiny_llama(&corral_testkit::TinySpec::default(), None);
    assert_eq!(translate(&corral_gguf::read_bytes(&tiny).unwrap()).unwrap(), None);
    // Gemma 3 as llama.cpp's converter writes it: none of Ollama's markers.
    let gemma = header(
        vec![
            ("general.architecture", s("gemma3")),
            ("gemma3.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-6)),
            ("gemma3.rope.freq_base", MetaValue::F32(1e6)),
        ],
        &[("token_embd.weight", &[8, 4])],
    );
    assert_eq!(translate(&gemma).unwrap(), None);
    let gpt_oss = header(vec![("general.architecture", s("gpt-oss"))], &[("blk.0.attn_output.weight", &[4, 4])]);
    assert_eq!(translate(&gpt_oss).unwrap(), None);
    let no_arch = header(vec![], &[]);
    assert_eq!(translate(&no_arch).unwrap(), None);
}

#[test]
fn gemma3_published_with_vision_gets_llama_cpp_keys_and_hides_the_tower() {
    let g = header(
        vec![
            ("general.architecture", s("gemma3")),
            ("gemma3.context_length", MetaValue::U32(131_072)),
            ("gemma3.rope.global.freq_base", MetaValue::F32(1e6)),
            ("gemma3.rope.local.freq_base", MetaValue::F32(1e4)),
            ("gemma3.mm.tokens_per_image", MetaValue::U32(256)),
            ("tokenizer.ggml.tokens", strings(6)),
            ("tokenizer.ggml.scores", MetaValue::Array(ArrayValue::F32(vec![0.0; 6]))),
            ("tokenizer.ggml.token_type", MetaValue::Array(ArrayValue::I32(vec![1; 6]))),
        ],
        &[
            ("token_embd.weight", &[8, 4]),
            ("blk.0.attn_q.weight", &[8, 8]),
            ("v.patch_embd.weight", &[14, 14, 3, 8]),
            ("mm.input_projection.weight", &[8, 8]),
        ],
    );
    let t = translate(&g).unwrap().unwrap();
    assert_eq!(t.handler, "gemma3");
    let seen = t.apply(&g);
    assert_eq!(seen.get("gemma3.rope.freq_base"), Some(&MetaValue::F32(1e6)));
    assert_eq!(seen.get("gemma3.rope.freq_base_swa"), Some(&MetaValue::F32(1e4)));
    assert_eq!(seen.get("gemma3.attention.layer_norm_rms_epsilon"), Some(&MetaValue::F32(1e-6)));
    assert_eq!(seen.get_str("gemma3.rope.scaling.type"), Some("linear"));
    assert_eq!(seen.get("gemma3.rope.scaling.factor"), Some(&MetaValue::F32(8.0)));
    // Cut to token_embd's 4 rows.
    assert_eq!(seen.get("tokenizer.ggml.tokens").and_then(MetaValue::as_array).map(ArrayValue::len), Some(4));
    assert_eq!(seen.get("tokenizer.ggml.scores").and_then(MetaValue::as_array).map(ArrayValue::len), Some(4));
    assert_eq!(names(&seen), ["token_embd.weight", "blk.0.attn_q.weight"]);
    assert_eq!(t.unread_bytes(&g), (14 * 14 * 3 * 8 + 8 * 8) * 4);
    assert_eq!(seen.architecture(), Some("gemma3"));
}

#[test]
fn embeddinggemma_becomes_gemma_embedding_with_its_dense_layers() {
    let g = header(
        vec![
            ("general.architecture", s("gemma3")),
            ("gemma3.block_count", MetaValue::U32(2)),
            ("gemma3.attention.causal", MetaValue::Bool(false)),
        ],
        &[
            ("token_embd.weight", &[8, 4]),
            ("norm.weight", &[8]),
            ("dense.0.weight", &[8, 32]),
            ("dense.1.weight", &[32, 8]),
        ],
    );
    let t = translate(&g).unwrap().unwrap();
    assert_eq!(t.handler, "embeddinggemma");
    let seen = t.apply(&g);
    assert_eq!(seen.architecture(), Some("gemma-embedding"));
    assert_eq!(seen.get_u64("gemma-embedding.block_count"), Some(2));
    assert_eq!(seen.get("gemma3.block_count"), None);
    assert_eq!(seen.get("gemma-embedding.attention.causal"), None);
    assert_eq!(seen.get_u64("gemma-embedding.dense_2_feat_out"), Some(32));
    assert_eq!(seen.get_u64("gemma-embedding.dense_3_feat_in"), Some(32));
    assert_eq!(names(&seen), ["token_embd.weight", "output_norm.weight", "dense_2.weight", "dense_3.weight"]);
}

#[test]
fn gemma3n_cuts_the_main_embedding_to_the_text_vocabulary() {
    let g = header(
        vec![("general.architecture", s("gemma3n")), ("tokenizer.ggml.tokens", strings(10))],
        &[("token_embd.weight", &[8, 10]), ("per_layer_token_embd.weight", &[16, 6])],
    );
    let t = translate(&g).unwrap().unwrap();
    assert_eq!(t.reshapes, [("token_embd.weight".to_string(), vec![8, 6])]);
    let seen = t.apply(&g);
    assert_eq!(seen.tensors[0].size, 8 * 6 * 4);
    assert_eq!(seen.tensors[0].offset, g.tensors[0].offset);
    assert_eq!(seen.get("tokenizer.ggml.tokens").and_then(MetaValue::as_array).map(ArrayValue::len), Some(6));
    assert_eq!(seen.get("tokenizer.ggml.eos_token_ids"), Some(&MetaValue::Array(ArrayValue::I32(vec![1, 106]))));
    // Same vocabulary on both: llama.cpp's layout.
    let fine = header(
        vec![("general.architecture", s("gemma3n"))],
        &[("token_embd.weight", &[8, 6]), ("per_layer_token_embd.weight", &[16, 6])],
    );
    assert_eq!(translate(&fine).unwrap(), None);
}

#[test]
fn gemma4_hides_its_encoders_and_fixes_the_tokenizer_name() {
    let g = header(
        vec![
            ("general.architecture", s("gemma4")),
            ("tokenizer.ggml.model", s("llama")),
            ("gemma4.block_count", MetaValue::U32(u32::MAX)),
        ],
        &[
            ("blk.0.ffn_gate_inp.per_expert_scale", &[4]),
            ("a.conv.weight", &[4]),
            ("v.patch.weight", &[4]),
            ("mm.proj.weight", &[4]),
        ],
    );
    let t = translate(&g).unwrap().unwrap();
    let seen = t.apply(&g);
    assert_eq!(seen.get_str("tokenizer.ggml.model"), Some("gemma4"));
    assert_eq!(names(&seen), ["blk.0.ffn_down_exps.scale"]);
}

#[test]
fn gptoss_becomes_gpt_oss() {
    let g = header(
        vec![
            ("general.architecture", s("gptoss")),
            ("gptoss.block_count", MetaValue::U32(1)),
            ("gptoss.expert_count", MetaValue::U32(4)),
            ("tokenizer.ggml.pre", s("default")),
        ],
        &[
            ("blk.0.attn_out.weight", &[8, 8]),
            // Already llama.cpp's name: not `attn_outputput`.
            ("blk.0.attn_output.bias", &[8]),
            ("blk.0.attn_sinks", &[2]),
            ("blk.0.ffn_norm.weight", &[8]),
            ("blk.0.ffn_gate_exps.weight", &[8, 24, 4]),
        ],
    );
    let t = translate(&g).unwrap().unwrap();
    assert_eq!(t.architecture.as_deref(), Some("gpt-oss"));
    let seen = t.apply(&g);
    assert_eq!(seen.architecture(), Some("gpt-oss"));
    assert_eq!(seen.get_u64("gpt-oss.block_count"), Some(1));
    assert_eq!(seen.get_u64("gpt-oss.expert_feed_forward_length"), Some(24));
    assert_eq!(seen.get_str("gpt-oss.rope.scaling.type"), Some("yarn"));
    assert_eq!(seen.get_str("tokenizer.ggml.pre"), Some("gpt-4o"));
    assert!(seen.metadata.iter().all(|(k, _)| !k.starts_with("gptoss.")));
    assert_eq!(
        names(&seen),
        [
            "blk.0.attn_output.weight",
            "blk.0.attn_output.bias",
            "blk.0.attn_sinks.weight",
            "blk.0.post_attention_norm.weight",
            "blk.0.ffn_gate_exps.weight"
        ]
    );
}

#[test]
fn llama3_gets_its_pre_tokenizer_and_end_of_turn() {
    let mut tokens: Vec<String> = (0..128_256).map(|i| format!("t{i}")).collect();
    tokens[128_006] = "<|start_header_id|>".into();
    tokens[128_009] = "<|eot_id|>".into();
    let tokens = MetaValue::Array(ArrayValue::String(tokens));
    let old = header(
        vec![
            ("general.architecture", s("llama")),
            ("tokenizer.ggml.tokens", tokens.clone()),
            ("tokenizer.ggml.eos_token_id", MetaValue::U32(128_001)),
        ],
        &[],
    );
    let t = translate(&old).unwrap().unwrap();
    assert_eq!(t.handler, "llama3");
    assert_eq!(set_value(&t, "tokenizer.ggml.pre"), Some(&s("llama-bpe")));
    assert_eq!(set_value(&t, "tokenizer.ggml.eos_token_id"), Some(&MetaValue::U32(128_009)));
    assert_eq!(set_value(&t, "tokenizer.ggml.eot_token_id"), Some(&MetaValue::U32(128_009)));
    // Already right: untouched.
    let current = header(
        vec![
            ("general.architecture", s("llama")),
            ("tokenizer.ggml.tokens", tokens),
            ("tokenizer.ggml.pre", s("llama-bpe")),
            ("tokenizer.ggml.eos_token_id", MetaValue::U32(128_009)),
        ],
        &[],
    );
    assert_eq!(translate(&current).unwrap(), None);
}

#[test]
fn qwen35_collapses_per_layer_heads_pads_sections_and_hides_mtp() {
    let g = header(
        vec![
            ("general.architecture", s("qwen35moe")),
            ("qwen35moe.attention.head_count_kv", MetaValue::Array(ArrayValue::U32(vec![0, 0, 0, 2]))),
            ("qwen35moe.rope.dimension_sections", MetaValue::Array(ArrayValue::I32(vec![11, 11, 10]))),
            ("qwen35moe.vision.block_count", MetaValue::U32(2)),
            ("qwen35moe.nextn_predict_layers", MetaValue::U32(1)),
        ],
        &[
            ("blk.0.ssm_dt", &[4]),
            ("mtp.fc.weight", &[4, 4]),
            ("v.blk.0.attn_q.weight", &[4, 4]),
            ("mm.0.weight", &[4]),
        ],
    );
    let seen = translate(&g).unwrap().unwrap().apply(&g);
    assert_eq!(seen.get("qwen35moe.attention.head_count_kv"), Some(&MetaValue::U32(2)));
    assert_eq!(
        seen.get("qwen35moe.rope.dimension_sections"),
        Some(&MetaValue::Array(ArrayValue::I32(vec![11, 11, 10, 0])))
    );
    assert_eq!(seen.get("qwen35moe.nextn_predict_layers"), None, "the MTP head is hidden");
    assert_eq!(names(&seen), ["blk.0.ssm_dt.bias"]);
}

#[test]
fn qwen25vl_and_qwen3vl_get_their_m_rope_sections() {
    let g = header(
        vec![
            ("general.architecture", s("qwen25vl")),
            ("qwen25vl.rope.mrope_section", MetaValue::Array(ArrayValue::I32(vec![16, 24, 24]))),
        ],
        &[("v.blk.0.w", &[4])],
    );
    let seen = translate(&g).unwrap().unwrap().apply(&g);
    assert_eq!(seen.architecture(), Some("qwen2vl"));
    assert_eq!(
        seen.get("qwen2vl.rope.dimension_sections"),
        Some(&MetaValue::Array(ArrayValue::I32(vec![16, 24, 24, 0])))
    );
    assert!(seen.tensors.is_empty());

    let g = header(
        vec![
            ("general.architecture", s("qwen3vl")),
            ("qwen3vl.vision.deepstack_visual_indexes", MetaValue::Array(ArrayValue::I32(vec![5, 11, 17]))),
        ],
        &[],
    );
    let seen = translate(&g).unwrap().unwrap().apply(&g);
    assert_eq!(
        seen.get("qwen3vl.rope.dimension_sections"),
        Some(&MetaValue::Array(ArrayValue::I32(vec![24, 20, 20, 0])))
    );
    assert_eq!(seen.get("qwen3vl.n_deepstack_layers"), Some(&MetaValue::U32(3)));
}

#[test]
fn glm4moelite_gets_deepseek2_mla_conventions() {
    let g = header(
        vec![
            ("general.architecture", s("glm4moelite")),
            ("glm4moelite.attention.key_length", MetaValue::U32(256)),
            ("glm4moelite.attention.kv_lora_rank", MetaValue::U32(512)),
            ("glm4moelite.rope.dimension_count", MetaValue::U32(64)),
            ("tokenizer.ggml.eos_token_ids", MetaValue::Array(ArrayValue::I32(vec![10, 11, 12]))),
        ],
        &[],
    );
    let seen = translate(&g).unwrap().unwrap().apply(&g);
    assert_eq!(seen.architecture(), Some("deepseek2"));
    assert_eq!(seen.get_u64("deepseek2.attention.head_count_kv"), Some(1));
    assert_eq!(seen.get_u64("deepseek2.attention.key_length"), Some(576));
    assert_eq!(seen.get_u64("deepseek2.attention.value_length"), Some(512));
    assert_eq!(seen.get_u64("deepseek2.attention.key_length_mla"), Some(256));
    assert_eq!(seen.get_u64("deepseek2.expert_group_count"), Some(1));
    assert_eq!(seen.get_u64("tokenizer.ggml.eot_token_id"), Some(11));
    assert_eq!(seen.get_u64("tokenizer.ggml.eom_token_id"), Some(12));
}

#[test]
fn other_text_layouts() {
    let lfm2 = header(
        vec![("general.architecture", s("lfm2")), ("lfm2.feed_forward_length", MetaValue::U32(12_288))],
        &[("output_norm.weight", &[8]), ("blk.0.ffn_gate.weight", &[8, 32])],
    );
    let seen = translate(&lfm2).unwrap().unwrap().apply(&lfm2);
    assert_eq!(names(&seen), ["token_embd_norm.weight", "blk.0.ffn_gate.weight"]);
    assert_eq!(seen.get_u64("lfm2.feed_forward_length"), Some(32));

    let olmo = header(vec![("general.architecture", s("olmo3")), ("olmo3.block_count", MetaValue::U32(2))], &[]);
    let seen = translate(&olmo).unwrap().unwrap().apply(&olmo);
    assert_eq!((seen.architecture(), seen.get_u64("olmo2.block_count")), (Some("olmo2"), Some(2)));

    let mistral = header(
        vec![
            ("general.architecture", s("mistral3")),
            ("mistral3.rope.scaling.beta_fast", MetaValue::F32(32.0)),
            ("mistral3.rope.scaling_beta", MetaValue::F32(0.1)),
        ],
        &[("blk.0.attn_q.weight", &[4]), ("v.patch_conv.weight", &[4])],
    );
    let seen = translate(&mistral).unwrap().unwrap().apply(&mistral);
    assert_eq!(seen.get("mistral3.rope.scaling.yarn_beta_fast"), Some(&MetaValue::F32(32.0)));
    assert_eq!(seen.get("mistral3.attention.temperature_scale"), Some(&MetaValue::F32(0.1)));
    assert_eq!(seen.get_str("tokenizer.ggml.pre"), Some("tekken"));
    assert_eq!(names(&seen), ["blk.0.attn_q.weight"]);

    let nemotron = header(
        vec![("general.architecture", s("nemotron_h_moe"))],
        &[
            ("blk.1.ffn_latent_in.weight", &[8, 3]),
            ("blk.1.ffn_latent_out.weight", &[3, 8]),
            ("mtp.layers.0.x.weight", &[4]),
        ],
    );
    let seen = translate(&nemotron).unwrap().unwrap().apply(&nemotron);
    assert_eq!(seen.get_u64("nemotron_h_moe.moe_latent_size"), Some(3));
    assert_eq!(names(&seen), ["blk.1.ffn_latent_down.weight", "blk.1.ffn_latent_up.weight"]);

    let ocr = header(
        vec![("general.architecture", s("deepseekocr"))],
        &[("blk.1.ffn_down_exps.weight", &[896, 8, 4]), ("blk.1.ffn_down_shexp.weight", &[1792, 8]), ("s.x", &[4])],
    );
    let seen = translate(&ocr).unwrap().unwrap().apply(&ocr);
    assert_eq!(seen.architecture(), Some("deepseek2-ocr"));
    assert_eq!(seen.get_u64("deepseek2-ocr.expert_feed_forward_length"), Some(896));
    assert_eq!(seen.get_u64("deepseek2-ocr.expert_shared_count"), Some(2));
    assert_eq!(seen.tensors.len(), 2);
}

#[test]
fn snowflake_charsmap_is_decoded_from_base64_characters() {
    let chars: Vec<String> = "AAEC/w==".chars().map(String::from).collect();
    let g = header(
        vec![
            ("general.architecture", s("bert")),
            ("tokenizer.ggml.model", s("t5")),
            ("tokenizer.ggml.precompiled_charsmap", MetaValue::Array(ArrayValue::String(chars))),
        ],
        &[],
    );
    let seen = translate(&g).unwrap().unwrap().apply(&g);
    assert_eq!(
        seen.get("tokenizer.ggml.precompiled_charsmap"),
        Some(&MetaValue::Array(ArrayValue::U8(vec![0, 1, 2, 255])))
    );
    assert_eq!(crate::other::base64_for_tests("aGk"), Some(b"hi".to_vec()));
    assert_eq!(crate::other::base64_for_tests("a$"), None);
}

#[test]
fn glmocr_joins_each_gate_and_up_into_llama_cpps_ffn_up() {
    let g = header(
        vec![
            ("general.architecture", s("glmocr")),
            ("glmocr.attention.key_length", MetaValue::U32(64)),
            ("glmocr.rope.mrope_section", MetaValue::Array(ArrayValue::I32(vec![8, 12, 12]))),
            ("tokenizer.ggml.pre", s("llama-bpe")),
        ],
        &[
            ("blk.0.ffn_gate.weight", &[8, 24]),
            ("blk.0.ffn_up.weight", &[8, 24]),
            ("blk.0.attn_out.weight", &[8, 8]),
            ("v.x", &[4]),
        ],
    );
    let t = translate(&g).unwrap().unwrap();
    let (gate, up) = (&g.tensors[0], &g.tensors[1]);
    assert_eq!(
        t.assembled,
        [(
            "blk.0.ffn_up.weight".to_string(),
            vec![(g.data_offset + gate.offset, gate.size), (g.data_offset + up.offset, up.size)]
        )]
    );
    let seen = t.apply(&g);
    assert_eq!(seen.architecture(), Some("glm4"));
    assert_eq!(seen.get_u64("glm4.rope.dimension_count"), Some(64));
    assert_eq!(seen.get("glm4.rope.dimension_sections"), Some(&MetaValue::Array(ArrayValue::I32(vec![8, 12, 12, 0]))));
    assert_eq!(seen.get_str("tokenizer.ggml.pre"), Some("chatglm-bpe"));
    assert_eq!(names(&seen), ["blk.0.ffn_up.weight", "blk.0.attn_output.weight"]);
    assert_eq!(seen.tensors[0].dims, [8, 48]);
    assert_eq!(seen.tensors[0].size, gate.size + up.size);
    // The gate's bytes are read as part of ffn_up: nothing is left unread but the vision tensor.
    assert_eq!(t.unread_bytes(&g), 4 * 4);

    // A gate that does not fit its up is refused by name, not handed to llama.cpp half done.
    let odd = header(
        vec![("general.architecture", s("glmocr"))],
        &[("blk.0.ffn_gate.weight", &[8, 24]), ("blk.0.ffn_up.weight", &[16, 24])],
    );
    let err = translate(&odd).unwrap_err();
    assert_eq!(err.architecture, "glmocr");
    assert!(err.to_string().contains("blk.0.ffn_gate.weight"), "{err}");
}

#[test]
fn the_switch_reads_like_ollamas() {
    assert!(enabled(None));
    assert!(enabled(Some("1")));
    assert!(!enabled(Some("0")));
}

/// Hostile shapes: a token_embd with one dimension, counts that do not fit, types that differ
/// from the expected ones. The handlers skip what they cannot use.
#[test]
fn odd_headers_do_not_panic() {
    for arch in [
        "gemma3",
        "gemma3n",
        "gemma4",
        "qwen35",
        "qwen3vl",
        "gptoss",
        "lfm2",
        "glm4moelite",
        "deepseekocr",
        "nemotron_h_omni",
        "llama",
        "glmocr",
    ] {
        let g = header(
            vec![
                ("general.architecture", s(arch)),
                (&*Box::leak(format!("{arch}.attention.head_count_kv").into_boxed_str()), s("x")),
                ("tokenizer.ggml.tokens", MetaValue::U32(3)),
                ("tokenizer.ggml.eos_token_ids", s("x")),
            ],
            &[
                ("token_embd.weight", &[7]),
                ("per_layer_token_embd.weight", &[3]),
                ("dense.0.weight", &[1]),
                ("v.x", &[1]),
                ("blk.0.ffn_gate_exps.weight", &[1]),
            ],
        );
        let _ = translate(&g).map(|t| t.map(|t| t.apply(&g)));
    }
}

/// Reviews against llama.cpp's loaders: sizes taken from the first block that has them, the
/// value head size from its own key, Llama 4's expert width from its tensors.
#[test]
fn sizes_come_from_the_right_keys_and_blocks() {
    let glm = header(
        vec![
            ("general.architecture", s("glm4moelite")),
            ("glm4moelite.attention.key_length", MetaValue::U32(192)),
            ("glm4moelite.attention.value_length", MetaValue::U32(128)),
        ],
        &[],
    );
    let seen = translate(&glm).unwrap().unwrap().apply(&glm);
    assert_eq!(seen.get_u64("deepseek2.attention.key_length_mla"), Some(192));
    assert_eq!(seen.get_u64("deepseek2.attention.value_length_mla"), Some(128));

    let nemotron =
        header(vec![("general.architecture", s("nemotron_h_moe"))], &[("blk.3.ffn_latent_in.weight", &[8, 5])]);
    let seen = translate(&nemotron).unwrap().expect("a latent block past the first two").apply(&nemotron);
    assert_eq!(seen.get_u64("nemotron_h_moe.moe_latent_size"), Some(5));

    let ocr = header(
        vec![("general.architecture", s("deepseekocr"))],
        &[("blk.2.ffn_down_exps.weight", &[64, 8, 4]), ("blk.2.ffn_down_shexp.weight", &[192, 8])],
    );
    let seen = translate(&ocr).unwrap().unwrap().apply(&ocr);
    assert_eq!(seen.get_u64("deepseek2-ocr.expert_feed_forward_length"), Some(64));
    assert_eq!(seen.get_u64("deepseek2-ocr.expert_shared_count"), Some(3));

    let llama4 = header(
        vec![
            ("general.architecture", s("llama4")),
            ("llama4.feed_forward_length", MetaValue::U32(24)),
            ("llama4.intermediate_size", MetaValue::U32(48)),
        ],
        &[("blk.1.ffn_gate_exps.weight", &[8, 24, 4]), ("v.x", &[4])],
    );
    let seen = translate(&llama4).unwrap().unwrap().apply(&llama4);
    assert_eq!(seen.get_u64("llama4.expert_feed_forward_length"), Some(24));
    assert_eq!(seen.get_u64("llama4.feed_forward_length"), Some(48));
}
