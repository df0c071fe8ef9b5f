use base64::Engine;
use corral_gguf::{ArrayValue, MetaValue};
use serde_json::{json, Value};

use super::*;

/// A character map llama.cpp accepts: a trie of two (empty) units, then one replacement, "a".
const CHARSMAP: [u8; 14] = [8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'a', 0];

fn xlmr_tokenizer_json() -> Value {
    let s = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
    let q = |t: &str| json!({"Sequence": {"id": t, "type_id": 0}});
    let added = |id: u32, t: &str| json!({"id": id, "content": t, "special": true, "normalized": false});
    json!({
        "added_tokens": [added(0, "<s>"), added(1, "<pad>"), added(2, "</s>"), added(3, "<unk>"), added(6, "<mask>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": base64::engine::general_purpose::STANDARD.encode(CHARSMAP)},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "add_prefix_space": true, "prepend_scheme": "always"},
        "post_processor": {"type": "TemplateProcessing", "single": [s("<s>"), q("A"), s("</s>")],
            "pair": [s("<s>"), q("A"), s("</s>"), s("</s>"), q("B"), s("</s>")]},
        "model": {"type": "Unigram", "unk_id": 3, "vocab": [
            ["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["▁a", -1.5], ["b", -2.25], ["<mask>", 0.0]]}
    })
}

fn get(keys: &[(String, MetaValue)], key: &str) -> Option<MetaValue> {
    keys.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn strings(v: &[&str]) -> MetaValue {
    MetaValue::Array(ArrayValue::String(v.iter().map(|s| s.to_string()).collect()))
}

#[test]
fn an_xlm_roberta_tokenizer_json_becomes_llama_cpp_ugm_keys() {
    // No tokenizer_config.json: the post-processor names `<s>` and `</s>`, config.json the padding.
    let model_config = json!({"pad_token_id": 1});
    let keys = from_tokenizer_json(&xlmr_tokenizer_json(), &Value::Null, &model_config, Some(8)).unwrap();
    assert_eq!(get(&keys, "tokenizer.ggml.model"), Some(MetaValue::String("t5".into())));
    assert_eq!(
        get(&keys, "tokenizer.ggml.tokens"),
        Some(strings(&["<s>", "<pad>", "</s>", "<unk>", "▁a", "b", "<mask>", "[PAD7]"]))
    );
    let scores = vec![0.0, 0.0, 0.0, 0.0, -1.5, -2.25, 0.0, -10000.0];
    assert_eq!(get(&keys, "tokenizer.ggml.scores"), Some(MetaValue::Array(ArrayValue::F32(scores))));
    let types = vec![3, 3, 3, 2, 1, 1, 3, 5];
    assert_eq!(get(&keys, "tokenizer.ggml.token_type"), Some(MetaValue::Array(ArrayValue::I32(types))));
    assert_eq!(get(&keys, "tokenizer.ggml.add_space_prefix"), Some(MetaValue::Bool(true)));
    assert_eq!(get(&keys, "tokenizer.ggml.remove_extra_whitespaces"), Some(MetaValue::Bool(true)));
    assert_eq!(
        get(&keys, "tokenizer.ggml.precompiled_charsmap"),
        Some(MetaValue::Array(ArrayValue::U8(CHARSMAP.to_vec())))
    );
    for (key, id) in [("bos", 0), ("padding", 1), ("eos", 2), ("seperator", 2), ("unknown", 3)] {
        assert_eq!(get(&keys, &format!("tokenizer.ggml.{key}_token_id")), Some(MetaValue::U32(id)), "{key}");
    }
    for flag in ["bos", "eos", "sep"] {
        assert_eq!(get(&keys, &format!("tokenizer.ggml.add_{flag}_token")), Some(MetaValue::Bool(true)), "{flag}");
    }
    // `<mask>` is named by `tokenizer_config.json`, absent here.
    assert_eq!(get(&keys, "tokenizer.ggml.mask_token_id"), None);
    let config = json!({"mask_token": "<mask>"});
    let keys = from_tokenizer_json(&xlmr_tokenizer_json(), &config, &Value::Null, None).unwrap();
    assert_eq!(get(&keys, "tokenizer.ggml.mask_token_id"), Some(MetaValue::U32(6)));
}

#[test]
fn the_fairseq_sentencepiece_model_gives_the_same_vocabulary_as_tokenizer_json() {
    let pieces: Vec<(String, f32, i32)> =
        [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("▁a", -1.5, 1), ("b", -2.25, 1)]
            .map(|(t, s, k)| (t.to_string(), s, k))
            .to_vec();
    let mut model = corral_testkit::sentencepiece_model(&pieces, true);
    // A second normalizer message: the character map (field 2) and remove_extra_whitespaces (4).
    let mut normalizer = vec![2 << 3 | 2, CHARSMAP.len() as u8];
    normalizer.extend(CHARSMAP);
    normalizer.extend([4 << 3, 1]);
    model.extend([3 << 3 | 2, normalizer.len() as u8]);
    model.extend(normalizer);
    let config = json!({"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "mask_token": "<mask>"});
    let from_model = from_fairseq_sentencepiece(&model, &config, &Value::Null, Some(8)).unwrap();
    let from_json = from_tokenizer_json(&xlmr_tokenizer_json(), &config, &Value::Null, Some(8)).unwrap();
    let sorted = |mut keys: Vec<(String, MetaValue)>| {
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys
    };
    assert_eq!(sorted(from_model), sorted(from_json));
}

#[test]
fn a_model_file_in_another_layout_is_refused() {
    let pieces = vec![("<s>".to_string(), 0.0, 3), ("<unk>".to_string(), 0.0, 2), ("a".to_string(), 0.0, 1)];
    let model = corral_testkit::sentencepiece_model(&pieces, true);
    let err = from_fairseq_sentencepiece(&model, &Value::Null, &Value::Null, None).unwrap_err().to_string();
    assert!(err.contains("sentencepiece.bpe.model") && err.contains("<unk>, <s>, </s>"), "{err}");
    let err = from_fairseq_sentencepiece(&[0x0b], &Value::Null, &Value::Null, None).unwrap_err().to_string();
    assert!(err.starts_with("sentencepiece.bpe.model: wire type 3"), "{err}");
}

#[test]
fn hostile_tokenizer_json_is_an_error_that_names_the_field() {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut t = xlmr_tokenizer_json();
        edit(&mut t);
        from_tokenizer_json(&t, &Value::Null, &Value::Null, None).unwrap_err().to_string()
    };
    let charsmap = |m: &str| format!("/normalizer/normalizers/0/precompiled_charsmap={m}");
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|t| t["model"]["vocab"][4] = json!([1, "a"])), "model.vocab[4] is not a [piece, score] pair"),
        (Box::new(|t| t["model"]["vocab"][5] = json!(["b"])), "model.vocab[5]"),
        (Box::new(|t| t["model"]["vocab"][5] = json!(["", 0.0])), "model.vocab[5]"),
        (Box::new(|t| t["model"]["vocab"][1] = json!("<pad>")), "model.vocab[1]"),
        (Box::new(|t| t["model"]["vocab"] = json!({})), "model.vocab is not a list"),
        (Box::new(|t| t["model"]["vocab"] = json!([])), "model.vocab has 0 pieces"),
        (Box::new(|t| t["model"]["unk_id"] = json!(99)), "model.unk_id 99"),
        (Box::new(|t| t["model"]["type"] = json!("BPE")), "a BPE model where a Unigram one"),
        (Box::new(|t| t["model"]["byte_fallback"] = json!(true)), "byte fallback"),
        (Box::new(|t| t["added_tokens"][0]["id"] = json!(70)), "id 70, outside the vocabulary of 7"),
        (Box::new(|t| t["added_tokens"][0] = json!({"id": 0})), "an added token without id or content"),
        (Box::new(|t| t["normalizer"]["normalizers"][1] = json!({"type": "Lowercase"})), "cannot apply"),
        (Box::new(|t| t["pre_tokenizer"] = json!({"type": "ByteLevel"})), "a pre-tokenizer llama.cpp"),
        (Box::new(|t| t["pre_tokenizer"] = Value::Null), "a pre-tokenizer llama.cpp"),
    ];
    for (edit, want) in cases {
        let err = with(&*edit);
        assert!(err.starts_with("tokenizer.json: ") && err.contains(want), "{err} (wanted {want})");
    }
    for (map, want) in [
        ("not base64!", "not base64"),
        ("AAA=", "has 2 bytes, too few for its header"),
        (&base64::engine::general_purpose::STANDARD.encode([8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]), "does not fit"),
        (&base64::engine::general_purpose::STANDARD.encode([255, 255, 255, 255, 0]), "does not fit"),
        (&base64::engine::general_purpose::STANDARD.encode([3, 0, 0, 0, 1, 2, 3, 4]), "does not fit"),
    ] {
        let pointer = charsmap(map);
        let (path, value) = pointer.split_once('=').unwrap();
        let err = with(&|t| *t.pointer_mut(path).unwrap() = json!(value));
        assert!(err.contains("precompiled_charsmap") && err.contains(want), "{err} (wanted {want})");
    }
}

#[test]
fn an_empty_charsmap_is_no_charsmap_and_spaces_are_kept_without_the_collapsing_rule() {
    let mut t = xlmr_tokenizer_json();
    t["normalizer"] = json!({"type": "Precompiled", "precompiled_charsmap": ""});
    t["pre_tokenizer"] = json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never"});
    let keys = from_tokenizer_json(&t, &Value::Null, &Value::Null, None).unwrap();
    assert_eq!(get(&keys, "tokenizer.ggml.precompiled_charsmap"), None);
    assert_eq!(get(&keys, "tokenizer.ggml.remove_extra_whitespaces"), Some(MetaValue::Bool(false)));
    assert_eq!(get(&keys, "tokenizer.ggml.add_space_prefix"), Some(MetaValue::Bool(false)));
    // Splitting on whitespace first drops runs of spaces as collapsing them does.
    t["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"},
        {"type": "Metaspace", "replacement": "▁", "add_prefix_space": true}]});
    let keys = from_tokenizer_json(&t, &Value::Null, &Value::Null, None).unwrap();
    assert_eq!(get(&keys, "tokenizer.ggml.remove_extra_whitespaces"), Some(MetaValue::Bool(true)));
    assert_eq!(get(&keys, "tokenizer.ggml.add_space_prefix"), Some(MetaValue::Bool(true)));
}
