//! A tiny XLM-RoBERTa model directory as Hugging Face ships one (`config.json`,
//! `tokenizer.json`, `model.safetensors`): the input of `corral create` for an XLM-R reranker
//! (`XLMRobertaForSequenceClassification`, bge-reranker-v2-m3's architecture) or embedding model
//! (`XLMRobertaModel`), small enough to convert and run in a test.
//!
//! The tokenizer is XLM-R's kind: a Unigram vocabulary in fairseq's order (`<s>` `<pad>` `</s>`
//! `<unk>`, then pieces, `<mask>` last), a `Precompiled` normalizer whose character map folds
//! full-width letters, the `ﬁ` ligature and unusual spaces as NFKC does ([`precompiled_charsmap`]
//! builds it), runs of spaces collapsed, `▁` before each word, and `<s> A </s></s> B </s>` around a
//! pair. The weights are random and seeded; the position table has XLM-R's two unused leading
//! rows (`pad_token_id` 1), so a converter that keeps them scores differently.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Width of the hidden states.
pub const XLMR_EMBD: u64 = 64;
/// Encoder blocks.
pub const XLMR_LAYERS: u64 = 2;
/// Attention heads.
pub const XLMR_HEADS: u64 = 2;
/// Feed-forward width.
pub const XLMR_FFN: u64 = 128;
/// Rows of the position table (`max_position_embeddings`): 512 positions after the two
/// padding rows.
pub const XLMR_POSITIONS: u64 = 514;
/// `pad_token_id`, which puts the first position at row 2.
pub const XLMR_PAD: u64 = 1;

/// What the fixture's character map rewrites: full-width `ａ`…`ｚ`, the `ﬁ` ligature, and the no-break and
/// ideographic spaces.
pub fn nfkc_rules() -> Vec<(String, String)> {
    let mut rules: Vec<(String, String)> = ('a'..='z')
        .map(|c| (char::from_u32(c as u32 - 'a' as u32 + 0xFF41).unwrap().to_string(), c.to_string()))
        .collect();
    rules.extend([("ﬁ", "fi"), ("\u{a0}", " "), ("\u{3000}", " ")].map(|(a, b)| (a.to_string(), b.to_string())));
    rules
}

/// SentencePiece's precompiled character map for `rules` (text, replacement), as its
/// `normalizer_spec.precompiled_charsmap` holds one and `tokenizer.json` base64-encodes it: the
/// byte size of a double-array trie (darts-clone's layout, 32-bit units), the trie, then the
/// replacements, each ending in a NUL; a key's leaf holds its replacement's offset.
pub fn precompiled_charsmap(rules: &[(String, String)]) -> Vec<u8> {
    struct Node {
        children: BTreeMap<u8, usize>,
        value: Option<u32>,
    }
    let mut replacements = Vec::new();
    let mut nodes = vec![Node { children: BTreeMap::new(), value: None }];
    for (from, to) in rules {
        let mut at = 0;
        for b in from.bytes() {
            let next = nodes.len();
            at = *nodes[at].children.entry(b).or_insert(next);
            if at == next {
                nodes.push(Node { children: BTreeMap::new(), value: None });
            }
        }
        nodes[at].value = Some(replacements.len() as u32);
        replacements.extend(to.bytes());
        replacements.push(0);
    }
    // Each node's children sit at `base ^ label` (its leaf value at `base ^ 0`), where `base` is
    // `position ^ offset`; bases are distinct so no unit answers to two parents.
    let mut units = vec![0u32; 256];
    let mut used = vec![true];
    let mut bases = BTreeSet::new();
    let mut queue = VecDeque::from([(0usize, 0usize)]);
    while let Some((node, pos)) = queue.pop_front() {
        let labels: Vec<u8> =
            nodes[node].value.map(|_| 0).into_iter().chain(nodes[node].children.keys().copied()).collect();
        let free = |i: usize, used: &Vec<bool>| i != 0 && !used.get(i).copied().unwrap_or(false);
        let base = (1..).find(|b| !bases.contains(b) && labels.iter().all(|c| free(b ^ *c as usize, &used))).unwrap();
        bases.insert(base);
        let end = (base | 0xFF) + 1;
        if units.len() < end {
            units.resize(end, 0);
        }
        used.resize(units.len(), false);
        let offset = (pos ^ base) as u32;
        assert!(offset < 1 << 21, "the trie outgrew the short offsets");
        units[pos] |= offset << 10;
        if let Some(v) = nodes[node].value {
            units[pos] |= 1 << 8;
            units[base] = v | 1 << 31;
            used[base] = true;
        }
        for (label, child) in &nodes[node].children {
            let at = base ^ *label as usize;
            units[at] = u32::from(*label);
            used[at] = true;
            queue.push_back((*child, at));
        }
    }
    let mut out = ((units.len() * 4) as u32).to_le_bytes().to_vec();
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
    out.extend(replacements);
    out
}

/// The vocabulary in id order, with scores: the specials, `▁`, single characters, then words
/// and word pieces, `<mask>` last. Words are cheaper than their parts, so the unigram model has
/// real choices to make (`▁panda` over `▁pan` `da`, `▁fish` from `ﬁ`'s replacement).
pub fn vocabulary() -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = ["<s>", "<pad>", "</s>", "<unk>"].iter().map(|s| (s.to_string(), 0.0)).collect();
    v.push(("\u{2581}".into(), -4.0));
    v.extend(('a'..='z').chain('0'..='9').map(|c| (c.to_string(), -7.0)));
    v.extend(["?", ".", ","].map(|p| (p.to_string(), -4.0)));
    let words = [
        ("the", -3.0),
        ("what", -4.0),
        ("is", -3.2),
        ("a", -3.1),
        ("of", -3.5),
        ("in", -3.4),
        ("panda", -6.0),
        ("pan", -5.0),
        ("bear", -5.5),
        ("hello", -6.0),
        ("world", -6.0),
        ("fish", -6.0),
        ("stock", -6.5),
        ("market", -6.5),
        ("fell", -7.0),
        ("today", -6.8),
        ("bamboo", -7.5),
        ("eats", -6.2),
    ];
    v.extend(words.map(|(w, s)| (format!("\u{2581}{w}"), s)));
    v.extend(
        [("da", -5.0), ("sh", -5.5), ("fi", -5.0), ("ing", -4.5), ("ed", -4.5), ("er", -4.8)]
            .map(|(p, s)| (p.to_string(), s)),
    );
    v.push(("<mask>".into(), 0.0));
    v
}

/// Standard base64 with padding, as `tokenizer.json` stores the character map.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// `tokenizer.json` for [`vocabulary`], laid out as Hugging Face's XLM-RoBERTa ones are.
pub fn tokenizer_json() -> Value {
    let vocab = vocabulary();
    let added = |id: usize, t: &str| {
        json!({"id": id, "content": t, "single_word": false, "lstrip": t == "<mask>", "rstrip": false,
               "normalized": false, "special": true})
    };
    let special = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
    let sequence = |t: &str| json!({"Sequence": {"id": t, "type_id": 0}});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(0, "<s>"), added(1, "<pad>"), added(2, "</s>"), added(3, "<unk>"),
            added(vocab.len() - 1, "<mask>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": base64(&precompiled_charsmap(&nfkc_rules()))},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
        "post_processor": {"type": "TemplateProcessing",
            "single": [special("<s>"), sequence("A"), special("</s>")],
            "pair": [special("<s>"), sequence("A"), special("</s>"), special("</s>"), sequence("B"), special("</s>")],
            "special_tokens": {
                "<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}},
        "decoder": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
        "model": {"type": "Unigram", "unk_id": 3, "byte_fallback": false,
            "vocab": vocab.iter().map(|(p, s)| json!([p, s])).collect::<Vec<_>>()}
    })
}

/// `config.json` of the model: a cross-encoder with one label, or the bare encoder.
fn config(cross_encoder: bool, vocab: usize) -> Value {
    let mut c = json!({
        "_name_or_path": "corral/tiny-xlm-roberta",
        "architectures": [if cross_encoder { "XLMRobertaForSequenceClassification" } else { "XLMRobertaModel" }],
        "model_type": "xlm-roberta",
        "attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1, "classifier_dropout": null,
        "hidden_act": "gelu", "position_embedding_type": "absolute",
        "hidden_size": XLMR_EMBD, "intermediate_size": XLMR_FFN,
        "num_hidden_layers": XLMR_LAYERS, "num_attention_heads": XLMR_HEADS,
        "max_position_embeddings": XLMR_POSITIONS, "type_vocab_size": 1, "vocab_size": vocab,
        "layer_norm_eps": 1e-5, "initializer_range": 0.02,
        "bos_token_id": 0, "pad_token_id": XLMR_PAD, "eos_token_id": 2,
        "torch_dtype": "float16", "use_cache": true,
    });
    if cross_encoder {
        c["id2label"] = json!({"0": "LABEL_0"});
        c["label2id"] = json!({"LABEL_0": 0});
    }
    c
}

/// The weights under Hugging Face's names (PyTorch shapes, outermost first), random from `seed`.
fn weights(cross_encoder: bool, vocab: u64, seed: u64) -> Vec<(String, Vec<u64>, Vec<f32>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut add = |name: String, shape: Vec<u64>, scale: f32, centre: f32| {
        let n = shape.iter().product::<u64>();
        let values = (0..n).map(|_| centre + rng.gen_range(-scale..scale)).collect();
        out.push((name, shape, values));
    };
    let (e, f) = (XLMR_EMBD, XLMR_FFN);
    let matrix = |fan_in: u64| (3.0 / fan_in as f32).sqrt();
    let p = if cross_encoder { "roberta." } else { "" };
    add(format!("{p}embeddings.word_embeddings.weight"), vec![vocab, e], 1.0, 0.0);
    add(format!("{p}embeddings.position_embeddings.weight"), vec![XLMR_POSITIONS, e], 0.5, 0.0);
    add(format!("{p}embeddings.token_type_embeddings.weight"), vec![1, e], 0.1, 0.0);
    add(format!("{p}embeddings.LayerNorm.weight"), vec![e], 0.1, 1.0);
    add(format!("{p}embeddings.LayerNorm.bias"), vec![e], 0.1, 0.0);
    for i in 0..XLMR_LAYERS {
        let l = format!("{p}encoder.layer.{i}");
        for m in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            add(format!("{l}.{m}.weight"), vec![e, e], matrix(e), 0.0);
            add(format!("{l}.{m}.bias"), vec![e], 0.1, 0.0);
        }
        add(format!("{l}.attention.output.LayerNorm.weight"), vec![e], 0.1, 1.0);
        add(format!("{l}.attention.output.LayerNorm.bias"), vec![e], 0.1, 0.0);
        add(format!("{l}.intermediate.dense.weight"), vec![f, e], matrix(e), 0.0);
        add(format!("{l}.intermediate.dense.bias"), vec![f], 0.1, 0.0);
        add(format!("{l}.output.dense.weight"), vec![e, f], matrix(f), 0.0);
        add(format!("{l}.output.dense.bias"), vec![e], 0.1, 0.0);
        add(format!("{l}.output.LayerNorm.weight"), vec![e], 0.1, 1.0);
        add(format!("{l}.output.LayerNorm.bias"), vec![e], 0.1, 0.0);
    }
    if cross_encoder {
        // RobertaClassificationHead: dense, tanh, out_proj to one score.
        add("classifier.dense.weight".into(), vec![e, e], matrix(e), 0.0);
        add("classifier.dense.bias".into(), vec![e], 0.1, 0.0);
        add("classifier.out_proj.weight".into(), vec![1, e], 2.0 * matrix(e), 0.0);
        add("classifier.out_proj.bias".into(), vec![1], 0.1, 0.0);
    } else {
        // XLMRobertaModel's pooler, which llama.cpp does not use.
        add("pooler.dense.weight".into(), vec![e, e], matrix(e), 0.0);
        add("pooler.dense.bias".into(), vec![e], 0.1, 0.0);
    }
    out
}

/// Writes a tiny XLM-RoBERTa cross-encoder (`XLMRobertaForSequenceClassification`, one label)
/// into `dir`: `config.json`, `tokenizer.json` and `model.safetensors` (F16), random weights from
/// `seed`.
pub fn tiny_xlmr_cross_encoder(dir: &Path, seed: u64) {
    tiny_xlmr(dir, seed, true);
}

/// Writes a tiny XLM-RoBERTa model into `dir`: a cross-encoder, or (`cross_encoder` false) an
/// `XLMRobertaModel` embedding model with its pooler and sentence-transformers' CLS pooling
/// (`modules.json`, `1_Pooling/config.json`), as bge-m3 has.
pub fn tiny_xlmr(dir: &Path, seed: u64, cross_encoder: bool) {
    let vocab = vocabulary().len();
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, v: &Value| std::fs::write(dir.join(name), serde_json::to_vec_pretty(v).unwrap()).unwrap();
    write("config.json", &config(cross_encoder, vocab));
    write("tokenizer.json", &tokenizer_json());
    if !cross_encoder {
        write(
            "modules.json",
            &json!([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]),
        );
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        write(
            "1_Pooling/config.json",
            &json!({"word_embedding_dimension": XLMR_EMBD, "pooling_mode_cls_token": true,
            "pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": false, "pooling_mode_lasttoken": false}),
        );
    }
    crate::write_safetensors(&dir.join("model.safetensors"), &weights(cross_encoder, vocab as u64, seed));
}
