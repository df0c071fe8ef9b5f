//! A tokenizer's special tokens (which ids are BOS, EOS, the separator…) and the ones llama.cpp
//! adds around a text, worked out as llama.cpp's converter does it for encoders (gguf-py's
//! `SpecialVocab`): the texts `tokenizer_config.json` names, the layout of `tokenizer.json`'s
//! post-processor (what Hugging Face puts around one text and around a pair), then the ids in
//! `config.json`.
//!
//! The post-processor is what makes a cross-encoder's pair come out right: XLM-RoBERTa joins a
//! query and a document as `<s> query </s></s> document </s>`, and llama.cpp rebuilds that from
//! `add_bos` (`<s>` first), `add_eos` (`</s>` after each text) and `add_sep` (a separator between
//! them). Where gguf-py would leave an id unset because `tokenizer_config.json` is missing, the
//! post-processor's own tokens fill it in: llama.cpp's defaults for an unset id are another
//! model's ids, which would silently be wrong.

use std::collections::BTreeMap;

use corral_gguf::MetaValue;
use serde_json::Value;

/// The GGUF key of each special token llama.cpp reads (it has no key for the classifier token:
/// its text only stands in for a missing BOS, as in gguf-py).
const KEYS: [(&str, &str); 6] = [
    ("bos", "tokenizer.ggml.bos_token_id"),
    ("eos", "tokenizer.ggml.eos_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"),
    ("sep", "tokenizer.ggml.seperator_token_id"),
    ("pad", "tokenizer.ggml.padding_token_id"),
    ("mask", "tokenizer.ggml.mask_token_id"),
];

/// Where the special tokens are looked up.
pub(crate) struct Sources<'a> {
    /// Every token's text, by id.
    pub tokens: &'a [String],
    /// `tokenizer.json`'s added tokens (text, id), searched before `tokens` as gguf-py does.
    pub added: &'a [(String, u32)],
    /// `tokenizer.json`'s `post_processor`, if any.
    pub post_processor: Option<&'a Value>,
    /// `tokenizer_config.json` (its `*_token` texts and `add_*_token` flags).
    pub tokenizer_config: &'a Value,
    /// `config.json` (its `*_token_id` ids).
    pub model_config: &'a Value,
    /// The tokenizer model's own unknown token.
    pub unk: Option<u32>,
}

/// What was found: ids by kind (`bos`, `eos`, `unk`, `sep`, `pad`, `mask`, `cls`) and the
/// add-token flags by kind (`bos`, `eos`, `sep`).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Specials {
    pub ids: BTreeMap<&'static str, u32>,
    pub add: BTreeMap<&'static str, bool>,
    /// The ids named by their text (the tokenizer's special tokens proper, which Hugging Face
    /// never splits text into); an id only `config.json` names is not among them.
    pub named: Vec<u32>,
}

impl Specials {
    /// GGUF's `tokenizer.ggml.*` keys for them.
    pub fn keys(&self) -> Vec<(String, MetaValue)> {
        let mut keys: Vec<(String, MetaValue)> = KEYS
            .iter()
            .filter_map(|(kind, key)| Some((key.to_string(), MetaValue::U32(*self.ids.get(kind)?))))
            .collect();
        for (kind, add) in &self.add {
            keys.push((format!("tokenizer.ggml.add_{kind}_token"), MetaValue::Bool(*add)));
        }
        keys
    }
}

/// The text of a special token in `tokenizer_config.json`: a string or `{"content": …}`.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.get("content")?.as_str()?.to_string()),
    }
}

/// The text of a post-processor template item that is a special token (`{"SpecialToken": {"id": …}}`).
fn template_special(item: Option<&Value>) -> Option<String> {
    Some(item?.get("SpecialToken")?.get("id")?.as_str()?.to_string())
}

/// The sequence a template item stands for (`A` or `B`).
fn template_sequence(item: Option<&Value>) -> Option<&str> {
    item?.get("Sequence")?.get("id")?.as_str()
}

pub(crate) fn find(s: &Sources) -> Specials {
    let mut text: BTreeMap<&'static str, String> = BTreeMap::new();
    for kind in ["bos", "eos", "unk", "sep", "pad", "cls", "mask"] {
        if let Some(t) = token_text(s.tokenizer_config.get(format!("{kind}_token"))) {
            text.insert(kind, t);
        }
    }
    let stand_in = |text: &mut BTreeMap<&'static str, String>| {
        for (missing, from) in [("bos", "cls"), ("eos", "sep")] {
            if let (false, Some(t)) = (text.contains_key(missing), text.get(from).cloned()) {
                text.insert(missing, t);
            }
        }
    };
    stand_in(&mut text);
    let mut add = BTreeMap::new();
    let processors: Vec<&Value> = match s.post_processor {
        Some(p) => match p.get("processors").and_then(Value::as_array) {
            Some(list) => list.iter().collect(),
            None => vec![p],
        },
        None => Vec::new(),
    };
    for p in processors {
        match p.get("type").and_then(Value::as_str) {
            Some("RobertaProcessing") => {
                // `<s> A </s>` and `<s> A </s></s> B </s>`, with the tokens it names.
                for kind in ["bos", "eos", "sep"] {
                    add.insert(kind, true);
                }
                for (kind, field) in [("cls", "cls"), ("sep", "sep")] {
                    if let (false, Some(t)) = (text.contains_key(kind), p.get(field).and_then(|f| f.get(0)?.as_str())) {
                        text.insert(kind, t.to_string());
                    }
                }
                stand_in(&mut text);
            }
            Some("TemplateProcessing") => template(p, &mut text, &mut add),
            _ => {}
        }
    }
    let config = s.tokenizer_config;
    for kind in ["bos", "eos", "sep"] {
        if let Some(flag) = config.get(format!("add_{kind}_token")).and_then(Value::as_bool) {
            add.insert(kind, flag);
        }
    }

    let n = s.tokens.len();
    let mut ids = BTreeMap::new();
    for (kind, t) in &text {
        let id = s
            .added
            .iter()
            .find(|(a, _)| a == t)
            .map(|(_, id)| *id)
            .or_else(|| s.tokens.iter().position(|x| x == t).map(|i| i as u32));
        if let Some(id) = id.filter(|id| (*id as usize) < n) {
            ids.insert(*kind, id);
        }
    }
    let mut named: Vec<u32> = ids.values().copied().collect();
    named.sort_unstable();
    named.dedup();
    for kind in ["bos", "eos", "unk", "sep", "pad", "cls", "mask"] {
        let by_id = s.model_config.get(format!("{kind}_token_id")).and_then(Value::as_u64);
        if let (false, Some(id)) = (ids.contains_key(kind), by_id.filter(|id| *id < n as u64)) {
            ids.insert(kind, id as u32);
        }
    }
    if let (false, Some(unk)) = (ids.contains_key("unk"), s.unk) {
        ids.insert("unk", unk);
    }
    Specials { ids, add, named }
}

/// What a `TemplateProcessing` post-processor says: a special token before a single text is
/// BOS (added), one after it EOS (added); special tokens between the two texts of a pair are
/// separators (`add_sep`) when they are the separator or EOS.
fn template(p: &Value, text: &mut BTreeMap<&'static str, String>, add: &mut BTreeMap<&'static str, bool>) {
    let empty = Vec::new();
    let single = p.get("single").and_then(Value::as_array).unwrap_or(&empty);
    let pair = p.get("pair").and_then(Value::as_array).unwrap_or(&empty);
    let (mut first, mut last) = (None, None);
    if single.len() > 1 {
        first = template_special(single.first());
        last = template_special(single.last());
    }
    if let Some(f) = &first {
        text.entry("bos").or_insert_with(|| f.clone());
        add.insert("bos", Some(f) == text.get("bos") || Some(f) == text.get("cls"));
    }
    if let Some(l) = &last {
        text.entry("eos").or_insert_with(|| l.clone());
        add.insert("eos", Some(l) == text.get("eos"));
    }
    let mut inner: &[Value] = pair;
    if first.is_some() && template_special(inner.first()) == first {
        inner = &inner[1..];
    }
    if last.is_some() && template_special(inner.last()) == last {
        inner = &inner[..inner.len() - 1];
    }
    if inner.len() < 3 || template_sequence(inner.first()) != Some("A") || template_sequence(inner.last()) != Some("B")
    {
        return;
    }
    let middle = &inner[1..inner.len() - 1];
    let separates = |item: Option<&Value>| {
        template_special(item).is_some_and(|t| Some(&t) == text.get("sep") || Some(&t) == text.get("eos"))
    };
    let add_sep = (separates(middle.first()) && last.is_none()) || (middle.len() == 2 && separates(middle.get(1)));
    add.insert("sep", add_sep);
    if add_sep && !text.contains_key("sep") {
        if let Some(eos) = text.get("eos").cloned() {
            text.insert("sep", eos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tokens() -> Vec<String> {
        ["<s>", "<pad>", "</s>", "<unk>", "▁a", "<mask>"].map(String::from).to_vec()
    }

    fn xlmr_template() -> Value {
        let s = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
        let q = |t: &str| json!({"Sequence": {"id": t, "type_id": 0}});
        json!({"type": "TemplateProcessing",
            "single": [s("<s>"), q("A"), s("</s>")],
            "pair": [s("<s>"), q("A"), s("</s>"), s("</s>"), q("B"), s("</s>")]})
    }

    #[test]
    fn xlm_roberta_pairs_take_bos_eos_and_a_separator() {
        let tokens = tokens();
        let config = json!({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
            "pad_token": "<pad>", "cls_token": "<s>", "mask_token": {"content": "<mask>"}});
        for post in [xlmr_template(), json!({"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0]})] {
            let s = Sources {
                tokens: &tokens,
                added: &[],
                post_processor: Some(&post),
                tokenizer_config: &config,
                model_config: &Value::Null,
                unk: Some(3),
            };
            let found = find(&s);
            let ids: Vec<(&str, u32)> = found.ids.iter().map(|(k, v)| (*k, *v)).collect();
            assert_eq!(ids, [("bos", 0), ("cls", 0), ("eos", 2), ("mask", 5), ("pad", 1), ("sep", 2), ("unk", 3)]);
            assert_eq!(found.add, BTreeMap::from([("bos", true), ("eos", true), ("sep", true)]), "{post}");
        }
    }

    #[test]
    fn without_tokenizer_config_the_template_and_config_json_name_them() {
        let tokens = tokens();
        let post = xlmr_template();
        let model_config = json!({"pad_token_id": 1, "bos_token_id": 99});
        let s = Sources {
            tokens: &tokens,
            added: &[("<s>".into(), 0), ("</s>".into(), 2)],
            post_processor: Some(&post),
            tokenizer_config: &Value::Null,
            model_config: &model_config,
            unk: Some(3),
        };
        let found = find(&s);
        let ids: Vec<(&str, u32)> = found.ids.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(ids, [("bos", 0), ("eos", 2), ("pad", 1), ("sep", 2), ("unk", 3)]);
        assert!(found.add["sep"]);
        let keys = found.keys();
        assert!(keys.contains(&("tokenizer.ggml.seperator_token_id".into(), MetaValue::U32(2))));
        assert!(keys.contains(&("tokenizer.ggml.add_eos_token".into(), MetaValue::Bool(true))));
    }

    #[test]
    fn flags_in_tokenizer_config_win() {
        let tokens = tokens();
        let post = xlmr_template();
        let config = json!({"add_bos_token": false});
        let s = Sources {
            tokens: &tokens,
            added: &[],
            post_processor: Some(&post),
            tokenizer_config: &config,
            model_config: &Value::Null,
            unk: None,
        };
        assert!(!find(&s).add["bos"]);
    }
}
