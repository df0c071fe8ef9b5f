//! Gemma: `gemma3` (text and embedded vision), EmbeddingGemma (a `gemma3` file with dense
//! layers), `gemma3n` and `gemma4`.

use corral_gguf::{ArrayValue, MetaValue};

use crate::work::Work;

/// Gemma 3 as Ollama's converter wrote it: the vision tower and projector in the same file
/// (`v.*`, `mm.*`), nested RoPE key names (1B), no RMS-norm epsilon, and the multimodal tokens
/// left in the tokenizer arrays past the embedding's rows. Its RMS-norm weights already carry
/// llama.cpp's +1, so no tensor data changes.
pub(crate) fn gemma3(w: &mut Work) -> bool {
    let marked = w.has("gemma3.mm.tokens_per_image")
        || w.any_tensor_with_prefix("v.")
        || w.any_tensor_with_prefix("mm.")
        || w.has("gemma3.rope.global.freq_base")
        || w.has("gemma3.rope.local.freq_base")
        || w.has("tokenizer.ggml.add_padding_token")
        || w.has("tokenizer.ggml.add_unknown_token")
        || !w.has("gemma3.attention.layer_norm_rms_epsilon");
    if !marked {
        return false;
    }
    w.handler("gemma3");
    w.copy("gemma3.rope.global.freq_base", "gemma3.rope.freq_base");
    w.copy("gemma3.rope.local.freq_base", "gemma3.rope.freq_base_swa");
    w.set_if_missing("gemma3.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-6));
    w.set_if_missing("gemma3.rope.freq_base", MetaValue::F32(1_000_000.0));
    w.set_if_missing("gemma3.rope.freq_base_swa", MetaValue::F32(10_000.0));
    // 4B/12B/27B stretch a 16k training context to 128k with linear scaling (factor 8), which
    // some published files leave out; the 1B and 270M (32k) have none.
    if w.u32_of("gemma3.context_length").is_some_and(|n| n >= 131_072) {
        w.set_if_missing("gemma3.rope.scaling.type", MetaValue::String("linear".into()));
        w.set_if_missing("gemma3.rope.scaling.factor", MetaValue::F32(8.0));
    }
    if let Some(rows) = w.dim("token_embd.weight", 1) {
        truncate_vocab(w, rows as usize);
    }
    w.hide_prefix("v.");
    w.hide_prefix("mm.");
    true
}

/// The tokenizer arrays cut to the embedding's rows (llama.cpp checks they agree).
fn truncate_vocab(w: &mut Work, rows: usize) {
    w.truncate_array("tokenizer.ggml.tokens", rows);
    w.truncate_array("tokenizer.ggml.scores", rows);
    w.truncate_array("tokenizer.ggml.token_type", rows);
}

/// EmbeddingGemma published as `gemma3` with the sentence-transformers projection as
/// `dense.0` / `dense.1`: llama.cpp loads it as `gemma-embedding` (bidirectional attention),
/// with the dense layers under their names there and sizes from their shapes.
pub(crate) fn embeddinggemma(w: &mut Work) -> bool {
    if w.tensor("dense.0.weight").is_none() {
        return false;
    }
    w.handler("embeddinggemma");
    w.set_arch("gemma-embedding");
    w.remove("gemma-embedding.attention.causal");
    w.remove("gemma-embedding.attention.sliding_window_pattern");
    w.set_if_missing("gemma-embedding.rope.freq_base_swa", MetaValue::F32(10_000.0));
    if let (Some(d0), Some(d1)) = (w.tensor("dense.0.weight").cloned(), w.tensor("dense.1.weight").cloned()) {
        let dim = |t: &corral_gguf::TensorInfo, i: usize| t.dims.get(i).copied().unwrap_or(0) as u32;
        w.set_u32("gemma-embedding.dense_2_feat_in", dim(&d0, 0));
        w.set_u32("gemma-embedding.dense_2_feat_out", dim(&d0, 1));
        w.set_u32("gemma-embedding.dense_3_feat_in", dim(&d1, 0));
        w.set_u32("gemma-embedding.dense_3_feat_out", dim(&d1, 1));
    }
    w.rename_tensor("dense.0.weight", "dense_2.weight");
    w.rename_tensor("dense.1.weight", "dense_3.weight");
    w.rename_tensor("norm.weight", "output_norm.weight");
    true
}

/// Gemma 3n whose main embedding and tokenizer carry the multimodal vocabulary (262400) while
/// the per-layer embedding has the text one (262144): both are cut to the text vocabulary (the
/// dropped entries are image and audio markers the text model never uses), the tokenizer is
/// read as SentencePiece with byte tokens typed as such, and `<end_of_turn>` (106) ends a turn.
pub(crate) fn gemma3n(w: &mut Work) -> bool {
    let (Some(te), Some(pe)) =
        (w.tensor("token_embd.weight").cloned(), w.tensor("per_layer_token_embd.weight").cloned())
    else {
        return false;
    };
    if te.dims.get(1) == pe.dims.get(1) {
        return false;
    }
    w.handler("gemma3n");
    let vocab = pe.dims.get(1).copied().unwrap_or(0);
    w.set_str("tokenizer.ggml.model", "llama");
    w.shrink("token_embd.weight", vec![te.dims[0], vocab]);
    truncate_vocab(w, vocab as usize);
    if let (Some(MetaValue::Array(ArrayValue::String(tokens))), Some(MetaValue::Array(ArrayValue::I32(types)))) =
        (w.get("tokenizer.ggml.tokens").cloned(), w.get("tokenizer.ggml.token_type").cloned())
    {
        let mut types = types;
        for (ty, tok) in types.iter_mut().zip(&tokens) {
            let b = tok.as_bytes();
            if b.len() == 6 && tok.starts_with("<0x") && b[5] == b'>' {
                *ty = 6; // byte
            } else if tok.starts_with("<unused") {
                *ty = 1; // normal
            }
        }
        w.set("tokenizer.ggml.token_type", MetaValue::Array(ArrayValue::I32(types)));
    }
    // `<end_of_turn>` (106) joins the file's end tokens, in the list's own integer type.
    fn with_end_of_turn<T: PartialEq + Clone>(ids: &[T], end_of_turn: T) -> Vec<T> {
        let mut ids = ids.to_vec();
        if !ids.contains(&end_of_turn) {
            ids.push(end_of_turn);
        }
        ids
    }
    let eos = match w.get("tokenizer.ggml.eos_token_ids") {
        Some(MetaValue::Array(ArrayValue::I32(ids))) => ArrayValue::I32(with_end_of_turn(ids, 106)),
        Some(MetaValue::Array(ArrayValue::U32(ids))) => ArrayValue::U32(with_end_of_turn(ids, 106)),
        _ => ArrayValue::I32(vec![1, 106]),
    };
    w.set("tokenizer.ggml.eos_token_ids", MetaValue::Array(eos));
    true
}

/// Gemma 4 published with its vision and audio encoders in the file, and (in some) the
/// tokenizer named `llama` although it is BPE: llama.cpp's `gemma4` tokenizer recognises its
/// control tokens, SentencePiece splits them into pieces. Split expert gate/up tensors load as
/// they are in llama.cpp (Ollama fuses them only for speed); the per-expert scale moves to the
/// name llama.cpp reads.
pub(crate) fn gemma4(w: &mut Work) -> bool {
    let marked = w.any_tensor_with_prefix("a.")
        || w.any_tensor_with_prefix("v.")
        || w.any_tensor_with_prefix("mm.")
        || w.any_tensor_with_prefix("model.vision_tower.")
        || w.str_is("tokenizer.ggml.model", "llama");
    if !marked {
        return false;
    }
    w.handler("gemma4");
    if w.str_is("tokenizer.ggml.model", "llama") {
        w.set_str("tokenizer.ggml.model", "gemma4");
    }
    for prefix in ["a.", "v.", "mm.", "model.vision_tower."] {
        w.hide_prefix(prefix);
    }
    // Walks the tensors, not 0..block_count: the count is the file's word.
    w.rename_suffix(".ffn_gate_inp.per_expert_scale", ".ffn_down_exps.scale");
    true
}
