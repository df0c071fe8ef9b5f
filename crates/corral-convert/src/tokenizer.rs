//! A Hugging Face `tokenizer.json` (byte-level BPE) and `tokenizer_config.json` to GGUF's
//! `tokenizer.*` keys, as llama.cpp's converter writes them: tokens by id (gaps filled with
//! `[PAD{id}]`, unused), their types (special added tokens are control tokens, other added tokens
//! user-defined), the merges, the special token ids, and the pre-tokenizer by llama.cpp's name.
//!
//! llama.cpp knows a pre-tokenizer by a name, which its converter finds by hashing how the Python
//! tokenizer splits a test text. Here the name comes from the pre-tokenizer's own description: the
//! regular expression it splits with (Qwen 2, Llama 3) or its parts (SmolLM's digits then byte
//! level, GPT-2's byte level alone). One not in the table is refused with its description, rather
//! than guessed: a wrong pre-tokenizer tokenizes differently without any error.

use serde_json::Value;

use crate::ConvertError;
use corral_gguf::{ArrayValue, MetaValue};

/// llama.cpp's name for a Hugging Face pre-tokenizer.
fn pre_name(pre: &Value) -> Option<&'static str> {
    let parts: Vec<&Value> = match pre.get("type").and_then(Value::as_str) {
        Some("Sequence") => pre.get("pretokenizers")?.as_array()?.iter().collect(),
        _ => vec![pre],
    };
    let kind = |v: &Value| v.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    let kinds: Vec<String> = parts.iter().map(|p| kind(p)).collect();
    let regex = parts
        .iter()
        .find(|p| kind(p) == "Split")
        .and_then(|p| p.get("pattern")?.get("Regex")?.as_str())
        .unwrap_or_default();
    let byte_level_regex = parts
        .iter()
        .find(|p| kind(p) == "ByteLevel")
        .map(|p| p.get("use_regex").and_then(Value::as_bool).unwrap_or(true));
    match (kinds.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), byte_level_regex) {
        (["ByteLevel"], Some(true)) => Some("gpt2"),
        (["Digits", "ByteLevel"], Some(true))
            if parts[0].get("individual_digits").and_then(Value::as_bool) == Some(true) =>
        {
            Some("smollm")
        }
        (["Split", "ByteLevel"], Some(false)) if regex.contains(r"\p{N}{1,3}") => Some("llama-bpe"),
        (["Split", "ByteLevel"], Some(false)) if regex.contains(r"\p{L}+|\p{N}|") => Some("qwen2"),
        _ => None,
    }
}

/// The text of a special token in `tokenizer_config.json`: a string or `{"content": …}`.
fn token_text(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) => Some(s),
        other => other.get("content")?.as_str(),
    }
}

/// The special token ids: each named by its text in `tokenizer_config.json` (`config`), or else
/// by its id in `config.json` (`model_config`: `bos_token_id`, …) when that is a token.
pub(crate) fn special_token_keys(tokens: &[String], config: &Value, model_config: &Value) -> Vec<(String, MetaValue)> {
    let mut keys = Vec::new();
    for (key, field) in [
        ("tokenizer.ggml.bos_token_id", "bos_token"),
        ("tokenizer.ggml.eos_token_id", "eos_token"),
        ("tokenizer.ggml.unknown_token_id", "unk_token"),
        ("tokenizer.ggml.padding_token_id", "pad_token"),
    ] {
        let by_text = token_text(config.get(field)).and_then(|t| tokens.iter().position(|x| x == t));
        let by_id = || {
            let id = model_config.get(format!("{field}_id"))?;
            // Some configs list several end tokens; the first is the one GGUF names.
            let id = id.as_u64().or_else(|| id.as_array()?.first()?.as_u64())?;
            usize::try_from(id).ok().filter(|i| *i < tokens.len())
        };
        if let Some(id) = by_text.or_else(by_id) {
            keys.push((key.to_string(), MetaValue::U32(id as u32)));
        }
    }
    keys
}

/// The `tokenizer.*` keys of a byte-level BPE tokenizer. `vocab_size` (from `config.json`) pads
/// the token list as the weights expect.
pub fn bpe(
    tokenizer: &Value,
    config: &Value,
    model_config: &Value,
    vocab_size: Option<usize>,
) -> Result<Vec<(String, MetaValue)>, ConvertError> {
    let bad = |m: String| ConvertError::Invalid(format!("tokenizer.json: {m}"));
    let model = tokenizer.get("model").ok_or_else(|| bad("no model".into()))?;
    match model.get("type").and_then(Value::as_str) {
        Some("BPE") => {}
        other => {
            return Err(ConvertError::Unsupported(format!(
                "tokenizer.json: a {other:?} tokenizer cannot be converted yet (byte-level BPE can)"
            )))
        }
    }
    let vocab = model.get("vocab").and_then(Value::as_object).ok_or_else(|| bad("no vocab".into()))?;
    // Each id's text and GGUF token type: 1 normal, 3 control (a special added token), 4
    // user-defined (another added token); ids nothing names stay `None` (unused padding).
    let mut by_id: Vec<Option<(String, i32)>> = Vec::new();
    let mut put = |id: u64, text: &str, kind: i32| -> Result<(), ConvertError> {
        let id = usize::try_from(id).ok().filter(|i| *i < 1 << 24).ok_or_else(|| bad(format!("token id {id}")))?;
        if by_id.len() <= id {
            by_id.resize(id + 1, None);
        }
        by_id[id] = Some((text.to_string(), kind));
        Ok(())
    };
    for (text, id) in vocab {
        put(id.as_u64().ok_or_else(|| bad(format!("the id of {text:?}")))?, text, 1)?;
    }
    for added in tokenizer.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
        let (Some(id), Some(text)) =
            (added.get("id").and_then(Value::as_u64), added.get("content").and_then(Value::as_str))
        else {
            return Err(bad(format!("an added token without id or content: {added}")));
        };
        let special = added.get("special").and_then(Value::as_bool) == Some(true);
        put(id, text, if special { 3 } else { 4 })?;
    }
    if let Some(n) = vocab_size {
        if n < by_id.len() {
            return Err(bad(format!("{} tokens, more than the model's {n}", by_id.len())));
        }
        by_id.resize(n, None);
    }
    let (tokens, types): (Vec<String>, Vec<i32>) =
        by_id.into_iter().enumerate().map(|(i, t)| t.unwrap_or_else(|| (format!("[PAD{i}]"), 5))).unzip();
    let merges: Vec<String> = match model.get("merges").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|m| match m {
                Value::String(s) => Ok(s.clone()),
                Value::Array(pair) if pair.len() == 2 => {
                    Ok(format!("{} {}", pair[0].as_str().unwrap_or_default(), pair[1].as_str().unwrap_or_default()))
                }
                other => Err(bad(format!("a merge that is not a pair: {other}"))),
            })
            .collect::<Result<_, _>>()?,
        None => return Err(bad("no merges".into())),
    };
    let pre = tokenizer.get("pre_tokenizer").unwrap_or(&Value::Null);
    let pre = pre_name(pre).ok_or_else(|| {
        ConvertError::Unsupported(format!("tokenizer.json: a pre-tokenizer Corral does not know: {pre}"))
    })?;

    let special = special_token_keys(&tokens, config, model_config);
    let mut keys = vec![
        ("tokenizer.ggml.model".to_string(), MetaValue::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), MetaValue::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), MetaValue::Array(ArrayValue::String(tokens))),
        ("tokenizer.ggml.token_type".into(), MetaValue::Array(ArrayValue::I32(types))),
        ("tokenizer.ggml.merges".into(), MetaValue::Array(ArrayValue::String(merges))),
    ];
    let add_bos = config.get("add_bos_token").and_then(Value::as_bool).unwrap_or(false);
    keys.push(("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(add_bos)));
    keys.extend(special);
    if let Some(template) = config.get("chat_template").and_then(Value::as_str) {
        keys.push(("tokenizer.chat_template".into(), MetaValue::String(template.into())));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pre_tokenizers_are_named_as_llama_cpp_names_them() {
        let byte_level = |r: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "use_regex": r});
        assert_eq!(pre_name(&byte_level(true)), Some("gpt2"));
        let smollm = json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]});
        assert_eq!(pre_name(&smollm), Some("smollm"));
        let split = |re: &str| json!({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": re}}, byte_level(false)]});
        assert_eq!(
            pre_name(&split(r"(?i:'s|'t)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+")),
            Some("llama-bpe")
        );
        assert_eq!(pre_name(&split(r"(?i:'s|'t)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+")), Some("qwen2"));
        assert_eq!(pre_name(&json!({"type": "Metaspace"})), None);
    }
}
