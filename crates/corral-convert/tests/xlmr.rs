//! An XLM-RoBERTa cross-encoder directory (the test kit's tiny one, laid out as
//! bge-reranker-v2-m3's is) converts to the GGUF llama.cpp's converter writes for it: a `bert`
//! reranker with RANK pooling, the classification head as `cls` / `cls.output`, the position
//! table without its two padding rows, and the Unigram tokenizer as llama.cpp's UGM (`t5`) one.
//! A directory that does not add up is an error naming the file and field, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use corral_convert::safetensors::Safetensors;
use corral_convert::{convert, Quantize};
use corral_gguf::{ArrayValue, GgmlType, Gguf, MetaValue};
use corral_testkit::xlmr::{self, XLMR_EMBD, XLMR_FFN, XLMR_PAD, XLMR_POSITIONS};
use serde_json::{json, Value};

/// Every file under `dir` by relative name, as `corral create` lists a model directory.
fn files(dir: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned(), p);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn converted(dir: &Path, quantize: Quantize) -> (Gguf, Vec<u8>) {
    let (w, _) = convert(&files(dir), quantize).unwrap();
    let bytes = w.to_bytes();
    (corral_gguf::read_bytes(&bytes).unwrap(), bytes)
}

fn array<'a>(g: &'a Gguf, key: &str) -> &'a ArrayValue {
    g.get(key).and_then(MetaValue::as_array).unwrap_or_else(|| panic!("no array {key}"))
}

/// A tensor's dimensions and type.
fn tensor(g: &Gguf, name: &str) -> (Vec<u64>, GgmlType) {
    let t = g.tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}"));
    (t.dims.clone(), t.kind)
}

#[test]
fn an_xlm_roberta_cross_encoder_becomes_a_llama_cpp_reranker() {
    let tmp = tempfile::tempdir().unwrap();
    xlmr::tiny_xlmr_cross_encoder(tmp.path(), 3);
    let (w, info) = convert(&files(tmp.path()), Quantize::F16).unwrap();
    // Five embedding tensors, sixteen per block, and the head's four.
    assert_eq!((info.architecture.as_str(), info.tensors), ("bert", 5 + 16 * 2 + 4));
    let bytes = w.to_bytes();
    let g = corral_gguf::read_bytes(&bytes).unwrap();

    let e = XLMR_EMBD;
    let ctx = XLMR_POSITIONS - (XLMR_PAD + 1);
    assert_eq!(g.architecture(), Some("bert"));
    for (key, want) in [
        ("pooling_type", 4),
        ("context_length", ctx),
        ("embedding_length", e),
        ("feed_forward_length", XLMR_FFN),
        ("block_count", 2),
        ("attention.head_count", 2),
    ] {
        assert_eq!(g.arch_u64(key), Some(want), "bert.{key}");
    }
    assert_eq!(g.get("bert.attention.causal"), Some(&MetaValue::Bool(false)));
    assert_eq!(g.get("bert.attention.layer_norm_epsilon"), Some(&MetaValue::F32(1e-5)));
    assert_eq!(array(&g, "bert.classifier.output_labels"), &ArrayValue::String(vec!["LABEL_0".into()]));

    // The tokenizer: llama.cpp's UGM one, XLM-R's ids.
    let vocab = xlmr::vocabulary();
    let n = vocab.len();
    assert_eq!(g.get_str("tokenizer.ggml.model"), Some("t5"));
    assert_eq!(g.get_str("tokenizer.ggml.pre"), Some("default"));
    let ArrayValue::String(tokens) = array(&g, "tokenizer.ggml.tokens") else { panic!("tokens") };
    assert_eq!(tokens[..4], ["<s>", "<pad>", "</s>", "<unk>"]);
    assert_eq!(tokens[n - 1], "<mask>");
    assert_eq!(*tokens, vocab.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>());
    let scores: Vec<f32> = vocab.iter().map(|(_, s)| *s as f32).collect();
    assert_eq!(array(&g, "tokenizer.ggml.scores"), &ArrayValue::F32(scores));
    let mut types = vec![1; n];
    types[..4].copy_from_slice(&[3, 3, 3, 2]);
    types[n - 1] = 3;
    assert_eq!(array(&g, "tokenizer.ggml.token_type"), &ArrayValue::I32(types));
    for (key, id) in [("bos", 0), ("padding", 1), ("eos", 2), ("seperator", 2), ("unknown", 3), ("mask", n - 1)] {
        assert_eq!(g.get_u64(&format!("tokenizer.ggml.{key}_token_id")), Some(id as u64), "{key}");
    }
    for flag in ["add_bos_token", "add_eos_token", "add_sep_token", "add_space_prefix", "remove_extra_whitespaces"] {
        assert_eq!(g.get(&format!("tokenizer.ggml.{flag}")), Some(&MetaValue::Bool(true)), "{flag}");
    }
    assert_eq!(g.get_u64("tokenizer.ggml.token_type_count"), Some(1));
    let charsmap = xlmr::precompiled_charsmap(&xlmr::nfkc_rules());
    assert_eq!(array(&g, "tokenizer.ggml.precompiled_charsmap"), &ArrayValue::U8(charsmap));

    // The tensors, in llama.cpp's shapes and types.
    assert_eq!(tensor(&g, "token_embd.weight"), (vec![e, n as u64], GgmlType::F16));
    assert_eq!(tensor(&g, "position_embd.weight"), (vec![e, ctx], GgmlType::F32));
    assert_eq!(tensor(&g, "token_types.weight"), (vec![e, 1], GgmlType::F32));
    assert_eq!(tensor(&g, "cls.weight"), (vec![e, e], GgmlType::F16));
    assert_eq!(tensor(&g, "cls.bias"), (vec![e], GgmlType::F32));
    assert_eq!(tensor(&g, "cls.output.weight"), (vec![e, 1], GgmlType::F16));
    assert_eq!(tensor(&g, "cls.output.bias"), (vec![1], GgmlType::F32));
    assert_eq!(tensor(&g, "blk.1.ffn_up.weight"), (vec![e, XLMR_FFN], GgmlType::F16));
    assert!(!g.tensors.iter().any(|t| t.name.contains("pooler") || t.name.contains("classifier")));

    // Position p of llama.cpp is row p + 2 of Hugging Face's table.
    let st = Safetensors::parse(std::fs::read(tmp.path().join("model.safetensors")).unwrap()).unwrap();
    let table = st.get("roberta.embeddings.position_embeddings.weight").unwrap().values;
    let t = g.tensors.iter().find(|t| t.name == "position_embd.weight").unwrap();
    let start = (g.data_offset + t.offset) as usize;
    let rows: Vec<f32> = bytes[start..start + t.size as usize]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(rows[..], table[((XLMR_PAD + 1) * e) as usize..]);
}

#[test]
fn q8_0_quantizes_the_matrices_and_keeps_the_lookup_tables() {
    let tmp = tempfile::tempdir().unwrap();
    xlmr::tiny_xlmr_cross_encoder(tmp.path(), 4);
    let (g, _) = converted(tmp.path(), Quantize::Q8_0);
    assert_eq!(tensor(&g, "blk.0.attn_q.weight").1, GgmlType::Q8_0);
    assert_eq!(tensor(&g, "cls.output.weight").1, GgmlType::Q8_0);
    assert_eq!(tensor(&g, "position_embd.weight").1, GgmlType::F32);
    assert_eq!(tensor(&g, "token_types.weight").1, GgmlType::F32);
    assert_eq!(tensor(&g, "blk.0.attn_output_norm.bias").1, GgmlType::F32);
}

#[test]
fn the_embedding_model_keeps_its_cls_pooling_and_drops_its_pooler() {
    let tmp = tempfile::tempdir().unwrap();
    xlmr::tiny_xlmr(tmp.path(), 5, false);
    let (g, _) = converted(tmp.path(), Quantize::F16);
    assert_eq!(g.arch_u64("pooling_type"), Some(2));
    assert_eq!(g.get("bert.classifier.output_labels"), None);
    assert!(!g.tensors.iter().any(|t| t.name.starts_with("cls")), "no classifier head");
    assert_eq!(g.tensors.len(), 5 + 16 * 2);
    assert_eq!(g.get_str("tokenizer.ggml.model"), Some("t5"));
}

/// Writes `edit` of the JSON file `name` of the fixture at `dir`.
fn edit_json(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) {
    let path = dir.join(name);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn a_hostile_directory_is_an_error_naming_what_is_wrong() {
    type Edit = Box<dyn Fn(&Path)>;
    let config = |f: fn(&mut Value)| -> Edit { Box::new(move |d| edit_json(d, "config.json", f)) };
    let tokenizer = |f: fn(&mut Value)| -> Edit { Box::new(move |d| edit_json(d, "tokenizer.json", f)) };
    let cases: Vec<(Edit, &str)> = vec![
        (config(|c| c["pad_token_id"] = json!(9999)), "pad_token_id 9999"),
        (config(|c| c["max_position_embeddings"] = json!(600)), "expected 600 rows (max_position_embeddings)"),
        (config(|c| c["id2label"] = json!({"0": "a", "1": "b"})), "id2label names 2 labels"),
        (config(|c| c["vocab_size"] = json!(500)), "tensor token_embd.weight is"),
        (config(|c| c["type_vocab_size"] = json!(2)), "tensor token_types.weight is"),
        (config(|c| c["hidden_size"] = json!(32)), "tensor token_embd.weight is"),
        (config(|c| c["hidden_act"] = json!("relu")), "hidden_act \"relu\""),
        (config(|c| c["architectures"] = json!(["XLMRobertaForMaskedLM"])), "(XLMRobertaForMaskedLM)"),
        (config(|c| c["num_hidden_layers"] = json!(3)), "no tensor for blk.2.attn_q.weight"),
        (tokenizer(|t| t["model"]["vocab"][7] = json!(["a"])), "tokenizer.json: model.vocab[7]"),
        (tokenizer(|t| t["normalizer"]["normalizers"][0]["precompiled_charsmap"] = json!("%%")), "not base64"),
        (tokenizer(|t| t["normalizer"]["normalizers"][0]["precompiled_charsmap"] = json!("AAA=")), "too few"),
        (tokenizer(|t| t["added_tokens"][4]["id"] = json!(1u64 << 40)), "outside the vocabulary"),
        (tokenizer(|t| t["model"]["type"] = json!("WordPiece")), "a WordPiece model"),
        (
            Box::new(|d| std::fs::remove_file(d.join("tokenizer.json")).unwrap()),
            "no tokenizer.json and no sentencepiece",
        ),
        (Box::new(|d| std::fs::write(d.join("tokenizer.json"), "{").unwrap()), "tokenizer.json: EOF"),
        (
            Box::new(|d| std::fs::write(d.join("model.safetensors"), [1, 2, 3]).unwrap()),
            "model.safetensors: safetensors: file too short",
        ),
    ];
    for (i, (edit, want)) in cases.into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        xlmr::tiny_xlmr_cross_encoder(tmp.path(), 6);
        edit(tmp.path());
        let err = convert(&files(tmp.path()), Quantize::F16).err().unwrap_or_else(|| panic!("case {i} converted"));
        assert!(err.to_string().contains(want), "case {i}: {err} (wanted {want:?})");
    }
}

#[test]
fn a_missing_classifier_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    xlmr::tiny_xlmr_cross_encoder(tmp.path(), 7);
    let path = tmp.path().join("model.safetensors");
    let st = Safetensors::parse(std::fs::read(&path).unwrap()).unwrap();
    let kept: Vec<(String, Vec<u64>, Vec<f32>)> = st
        .names()
        .filter(|n| *n != "classifier.dense.weight")
        .map(|n| {
            let t = st.get(n).unwrap();
            (n.to_string(), t.shape, t.values)
        })
        .collect();
    corral_testkit::write_safetensors(&path, &kept);
    let err = convert(&files(tmp.path()), Quantize::F16).err().unwrap().to_string();
    assert_eq!(err, "the model has no tensor for cls.weight");
}
