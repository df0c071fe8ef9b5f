//! A random-weight cross-encoder reranker: a BERT encoder whose `[CLS]` state goes through a
//! classification head to one relevance score, the shape of `BertForSequenceClassification`
//! rerankers (ms-marco MiniLM cross-encoders and the like) as llama.cpp's converter writes them.
//!
//! llama.cpp scores such a model with RANK pooling (`<arch>.pooling_type` = 4): it takes the
//! hidden state of each sequence's first token, applies `cls` (the BERT pooler: a square matrix,
//! a bias and tanh) and then `cls.output` (the classifier: `[embd, n_cls_out]` and a bias), and
//! `llama_get_embeddings_seq` returns those `n_cls_out` floats per sequence; `n_cls_out` is the
//! length of `<arch>.classifier.output_labels` (1 when the key is absent). The fixture writes
//! one label, so every sequence gives one raw score.
//!
//! The vocabulary is MiniLM's WordPiece one, taken from the converter's own conversion of the
//! test kit's all-MiniLM-L6-v2 directory ([`crate::minilm_dir`]), so llama.cpp tokenizes real
//! text with it; the weights are small, random and seeded (2 blocks, 64 wide, 2 heads).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use corral_gguf::{ArrayValue, Gguf, MetaValue};

use crate::random_arch::Model;

/// Width of the reranker's hidden states.
pub const RERANKER_EMBD: u64 = 64;
const BLOCKS: u64 = 2;
const HEADS: u64 = 2;
const FFN: u64 = 128;
/// Positions the model has embeddings for (`bert.context_length`).
pub const RERANKER_CONTEXT: u64 = 512;
/// llama.cpp's `LLAMA_POOLING_TYPE_RANK` (`include/llama.h`).
pub const RANK_POOLING: u32 = 4;
/// The classifier's labels: one, so one score per sequence.
pub const RERANKER_LABELS: &[&str] = &["LABEL_0"];

/// Every `tokenizer.*` key of all-MiniLM-L6-v2 as `corral_convert::convert` writes it (the
/// WordPiece vocabulary in llama.cpp's WPM form, the special token ids and the add-token flags),
/// converted once per process.
fn minilm_tokenizer() -> &'static Gguf {
    static TOKENIZER: OnceLock<Gguf> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let dir = crate::minilm_dir();
        let files: BTreeMap<String, std::path::PathBuf> =
            ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt"]
                .into_iter()
                .map(|name| (name.to_string(), dir.join(name)))
                .collect();
        let (writer, _) = corral_convert::convert(&files, corral_convert::Quantize::Q8_0).expect("MiniLM converts");
        let mut header = corral_gguf::read_bytes(&writer.to_bytes()).expect("the converted MiniLM parses");
        header.metadata.retain(|(key, _)| key.starts_with("tokenizer."));
        header.tensors.clear();
        header
    })
}

/// A BERT cross-encoder reranker GGUF with random weights drawn from `seed`: architecture
/// `bert`, RANK pooling, a pooler (`cls`) and a one-output classifier (`cls.output`), and
/// MiniLM's tokenizer. About 2.3 MB; the same seed gives the same bytes.
///
/// # Panics
/// When all-MiniLM-L6-v2 has not been fetched (`scripts/fetch-models.sh`).
pub fn tiny_reranker(seed: u64) -> Vec<u8> {
    let tokenizer = minilm_tokenizer();
    let mut m = Model::new("bert", tokenizer, tokenizer.get_str("tokenizer.ggml.pre"), seed);
    m.w.set("general.name", MetaValue::String("corral-tiny-reranker".into()));
    // The special-token flags llama.cpp's converter (gguf-py's `SpecialVocab`) derives from a
    // BERT `TemplateProcessing` of `[CLS] $A [SEP]` / `[CLS] $A [SEP] $B [SEP]`: `[CLS]` is BOS,
    // `[SEP]` is EOS and is added, and no extra separator goes between the pair. llama-server's
    // `format_prompt_rerank` then builds `[CLS] query [SEP] document [SEP]`, the pair a BERT
    // cross-encoder was trained on (with Corral's embedding flags it would drop the last `[SEP]`).
    let sep = tokenizer.get_u64("tokenizer.ggml.seperator_token_id").expect("MiniLM has a [SEP] token");
    m.w.set("tokenizer.ggml.eos_token_id", MetaValue::U32(sep as u32))
        .set("tokenizer.ggml.add_eos_token", MetaValue::Bool(true))
        .set("tokenizer.ggml.add_sep_token", MetaValue::Bool(false));
    m.u32("context_length", RERANKER_CONTEXT);
    m.u32("embedding_length", RERANKER_EMBD);
    m.u32("feed_forward_length", FFN);
    m.u32("block_count", BLOCKS);
    m.u32("attention.head_count", HEADS);
    m.f32("attention.layer_norm_epsilon", 1e-12);
    m.key("attention.causal", MetaValue::Bool(false));
    m.u32("pooling_type", RANK_POOLING.into());
    let labels = RERANKER_LABELS.iter().map(|l| l.to_string()).collect();
    m.key("classifier.output_labels", MetaValue::Array(ArrayValue::String(labels)));

    let e = RERANKER_EMBD;
    // Segment embeddings, one row per token type the vocabulary declares (llama.cpp adds row 0).
    let types = tokenizer.get_u64("tokenizer.ggml.token_type_count").unwrap_or(2);
    m.embeddings(e);
    m.small("token_types.weight", &[e, types], 0.1);
    m.small("position_embd.weight", &[e, RERANKER_CONTEXT], 0.5);
    layer_norm(&mut m, "token_embd_norm");
    for i in 0..BLOCKS {
        let b = |stem: &str| format!("blk.{i}.{stem}");
        for stem in ["attn_q", "attn_k", "attn_v", "attn_output"] {
            m.matrix(&b(&format!("{stem}.weight")), &[e, e]);
            m.small(&b(&format!("{stem}.bias")), &[e], 0.1);
        }
        layer_norm(&mut m, &b("attn_output_norm"));
        m.matrix(&b("ffn_up.weight"), &[e, FFN]);
        m.small(&b("ffn_up.bias"), &[FFN], 0.1);
        m.matrix(&b("ffn_down.weight"), &[FFN, e]);
        m.small(&b("ffn_down.bias"), &[e], 0.1);
        layer_norm(&mut m, &b("layer_output_norm"));
    }
    // The pooler (BERT's `pooler.dense`, followed by tanh in llama.cpp's RANK pooling) and the
    // classifier (`classifier`), one score per label. The classifier stays F32: it is tiny, and
    // the score is the value under test.
    m.matrix("cls.weight", &[e, e]);
    m.small("cls.bias", &[e], 0.1);
    let outputs = RERANKER_LABELS.len() as u64;
    m.small("cls.output.weight", &[e, outputs], (3.0 / e as f32).sqrt());
    m.small("cls.output.bias", &[outputs], 0.1);
    m.finish()
}

/// A BERT layer norm: weights near one, small biases.
fn layer_norm(m: &mut Model, stem: &str) {
    m.norm(&format!("{stem}.weight"), RERANKER_EMBD);
    m.small(&format!("{stem}.bias"), &[RERANKER_EMBD], 0.1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reranker_is_a_rank_pooled_bert_with_a_classifier() {
        let bytes = tiny_reranker(7);
        let g = corral_gguf::read_bytes(&bytes).unwrap();
        assert_eq!(g.architecture(), Some("bert"));
        assert_eq!(g.arch_u64("pooling_type"), Some(RANK_POOLING.into()));
        assert_eq!(g.arch_u64("block_count"), Some(BLOCKS));
        let labels = g.get("bert.classifier.output_labels").and_then(MetaValue::as_array).map(ArrayValue::len);
        assert_eq!(labels, Some(1));
        let dims =
            |name: &str| g.tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no {name}")).dims.clone();
        assert_eq!(dims("cls.weight"), [RERANKER_EMBD, RERANKER_EMBD]);
        assert_eq!(dims("cls.bias"), [RERANKER_EMBD]);
        assert_eq!(dims("cls.output.weight"), [RERANKER_EMBD, 1]);
        assert_eq!(dims("cls.output.bias"), [1]);
        // The embeddings, a pooler and classifier of two tensors each, and 16 per block.
        assert_eq!(g.tensors.len(), 5 + 4 + 16 * BLOCKS as usize);

        // MiniLM's WordPiece vocabulary, one embedding row per token.
        assert_eq!(g.get_str("tokenizer.ggml.model"), Some("bert"));
        let vocab = g.get("tokenizer.ggml.tokens").and_then(MetaValue::as_array).map_or(0, ArrayValue::len) as u64;
        assert_eq!(vocab, 30522);
        assert_eq!(dims("token_embd.weight"), [RERANKER_EMBD, vocab]);
        assert_eq!(dims("position_embd.weight"), [RERANKER_EMBD, RERANKER_CONTEXT]);
        // [CLS] is BOS, [SEP] ends each half of the pair.
        assert_eq!(g.get_u64("tokenizer.ggml.bos_token_id"), Some(101));
        assert_eq!(g.get_u64("tokenizer.ggml.seperator_token_id"), Some(102));
        assert_eq!(g.get_u64("tokenizer.ggml.eos_token_id"), Some(102));
        let flag = |k: &str| match g.get(&format!("tokenizer.ggml.{k}")) {
            Some(MetaValue::Bool(b)) => *b,
            other => panic!("{k}: {other:?}"),
        };
        assert!(flag("add_bos_token") && flag("add_eos_token") && !flag("add_sep_token"));
        assert!((1_500_000..4_000_000).contains(&bytes.len()), "{} bytes", bytes.len());
    }

    #[test]
    fn reranker_weights_follow_the_seed() {
        assert_eq!(tiny_reranker(3), tiny_reranker(3));
        assert_ne!(tiny_reranker(3), tiny_reranker(4));
    }
}
