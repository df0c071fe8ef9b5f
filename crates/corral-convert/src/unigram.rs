//! Unigram tokenizers (SentencePiece's unigram model, XLM-RoBERTa's tokenizer) to the keys of
//! llama.cpp's UGM tokenizer, which GGUF calls `t5`: every piece with its score and type, the
//! normalizer's precompiled character map, whether a space goes before the text and whether
//! runs of spaces collapse, and the special tokens.
//!
//! The pieces come from `tokenizer.json` (`model.type` = `Unigram`), whose `[piece, score]` list
//! is already in the model's id order, or from a SentencePiece `sentencepiece.bpe.model` laid
//! out as fairseq laid out XLM-RoBERTa ([`from_fairseq_sentencepiece`]). The character map is the
//! one SentencePiece compiled (a double-array trie of prefixes and their replacements, NFKC for
//! XLM-R); `tokenizer.json` carries it base64-encoded in its `Precompiled` normalizer, the model
//! file as bytes. It is copied as it is; it is only checked to have the header and the room llama.cpp
//! checks for when it loads the model, so that a bad map fails here, named, and not at load time.
//!
//! llama.cpp applies only what its UGM tokenizer knows (the character map, a space prefix,
//! collapsing spaces), so a normalizer or pre-tokenizer that asks for anything else is refused
//! rather than converted into a tokenizer that splits text differently.

use base64::Engine;
use corral_gguf::{ArrayValue, MetaValue};
use serde_json::Value;

use crate::sentencepiece::Model;
use crate::specials::{self, Sources, Specials};
use crate::ConvertError;

/// Most pieces a vocabulary may have (XLM-R's 250,002 is far below).
const MAX_PIECES: usize = 1 << 22;
/// Deepest nesting of `Sequence` normalizers followed.
const MAX_DEPTH: usize = 4;
/// GGUF token types (SentencePiece's piece types).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
/// The score of an id no piece fills (`[PAD<id>]`), as llama.cpp's converter writes it.
const UNUSED_SCORE: f32 = -10000.0;

fn bad(m: String) -> ConvertError {
    ConvertError::Invalid(format!("tokenizer.json: {m}"))
}

/// A few characters of `v` for an error message.
fn brief(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// The vocabulary by id.
struct Vocab {
    tokens: Vec<String>,
    scores: Vec<f32>,
    types: Vec<i32>,
}

impl Vocab {
    /// Pads the vocabulary with unused `[PAD<id>]` tokens up to `n` ids (the model's token
    /// embeddings can have more rows than the tokenizer has pieces).
    fn pad_to(&mut self, n: usize) {
        for i in self.tokens.len()..n {
            self.tokens.push(format!("[PAD{i}]"));
            self.scores.push(UNUSED_SCORE);
            self.types.push(UNUSED);
        }
    }
}

/// What llama.cpp's normalizer needs to know.
#[derive(Debug, Default, PartialEq)]
struct Normalizer {
    charsmap: Option<Vec<u8>>,
    /// Runs of spaces become one (`remove_extra_whitespaces`).
    collapse_spaces: bool,
}

/// Checks a precompiled character map the way llama.cpp does when it loads one: a 4-byte
/// little-endian size of the trie, the trie (32-bit units), then at least one byte of
/// replacement strings.
fn check_charsmap(map: &[u8], source: &str) -> Result<(), ConvertError> {
    let err = |m: String| ConvertError::Invalid(format!("{source}: the precompiled_charsmap {m}"));
    let Some(head) = map.get(..4) else {
        return Err(err(format!("has {} bytes, too few for its header", map.len())));
    };
    let trie = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
    if !trie.is_multiple_of(4) || 4 + trie >= map.len() as u64 {
        return Err(err(format!("says its trie has {trie} bytes, which does not fit its {} bytes", map.len())));
    }
    Ok(())
}

fn normalizer(v: &Value, depth: usize, out: &mut Normalizer) -> Result<(), ConvertError> {
    if depth > MAX_DEPTH {
        return Err(bad("normalizers nested too deep".into()));
    }
    match v.get("type").and_then(Value::as_str) {
        None if v.is_null() => {}
        Some("Sequence") => {
            let list = v
                .get("normalizers")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("a Sequence normalizer without normalizers".into()))?;
            for n in list {
                normalizer(n, depth + 1, out)?;
            }
        }
        Some("Precompiled") => {
            let text = match v.get("precompiled_charsmap") {
                Some(Value::String(s)) => s.as_str(),
                Some(Value::Null) | None => "",
                Some(other) => return Err(bad(format!("precompiled_charsmap is not a string: {}", brief(other)))),
            };
            let map = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| bad(format!("precompiled_charsmap is not base64: {e}")))?;
            // An empty map is no map, as llama.cpp's converter skips it.
            if !map.is_empty() {
                check_charsmap(&map, "tokenizer.json")?;
                out.charsmap = Some(map);
            }
        }
        // SentencePiece's `remove_extra_whitespaces`, as Hugging Face's converter rewrites it:
        // runs of two or more spaces replaced by one (a space, or the `▁` it becomes).
        Some("Replace")
            if v.get("pattern").and_then(|p| p.get("Regex")).and_then(Value::as_str) == Some(" {2,}")
                && matches!(v.get("content").and_then(Value::as_str), Some(" " | "\u{2581}")) =>
        {
            out.collapse_spaces = true;
        }
        // Stripping the ends: llama.cpp's collapsing drops them too.
        Some("Strip") => {}
        _ => {
            return Err(ConvertError::Unsupported(format!(
                "tokenizer.json: a normalizer llama.cpp's UGM tokenizer cannot apply: {}",
                brief(v)
            )))
        }
    }
    Ok(())
}

/// Whether the pre-tokenizer puts `▁` before the text (`add_space_prefix`), and whether it
/// splits on whitespace (which drops runs of spaces as collapsing does). Only SentencePiece's
/// own pre-tokenization (`Metaspace`, optionally after `WhitespaceSplit`) is llama.cpp's.
fn pre_tokenizer(pre: &Value) -> Result<(bool, bool), ConvertError> {
    let unsupported = || {
        ConvertError::Unsupported(format!(
            "tokenizer.json: a pre-tokenizer llama.cpp's UGM tokenizer does not do: {}",
            brief(pre)
        ))
    };
    let parts: Vec<&Value> = match pre.get("type").and_then(Value::as_str) {
        Some("Sequence") => {
            pre.get("pretokenizers").and_then(Value::as_array).ok_or_else(unsupported)?.iter().collect()
        }
        _ => vec![pre],
    };
    let (mut prefix, mut split, mut metaspace) = (true, false, false);
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("WhitespaceSplit") => split = true,
            Some("Metaspace") if !metaspace => {
                if p.get("replacement").and_then(Value::as_str).is_some_and(|r| r != "\u{2581}") {
                    return Err(unsupported());
                }
                prefix = match p.get("prepend_scheme").and_then(Value::as_str) {
                    Some("always" | "first") => true,
                    Some("never") => false,
                    Some(_) => return Err(unsupported()),
                    None => p.get("add_prefix_space").and_then(Value::as_bool).unwrap_or(true),
                };
                metaspace = true;
            }
            _ => return Err(unsupported()),
        }
    }
    if !metaspace {
        return Err(unsupported());
    }
    Ok((prefix, split))
}

/// The `tokenizer.*` keys of a Unigram `tokenizer.json`, with the special tokens named by
/// `tokenizer_config` (`tokenizer_config.json`, or the model's defaults) and `model_config`
/// (`config.json`), padded to `vocab_size` ids.
pub fn from_tokenizer_json(
    tokenizer: &Value,
    tokenizer_config: &Value,
    model_config: &Value,
    vocab_size: Option<usize>,
) -> Result<Vec<(String, MetaValue)>, ConvertError> {
    let model = tokenizer.get("model").ok_or_else(|| bad("no model".into()))?;
    match model.get("type").and_then(Value::as_str) {
        Some("Unigram") => {}
        other => {
            return Err(ConvertError::Unsupported(format!(
                "tokenizer.json: a {} model where a Unigram one was expected",
                other.unwrap_or("typeless")
            )))
        }
    }
    if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        return Err(ConvertError::Unsupported(
            "tokenizer.json: a Unigram model with byte fallback, which llama.cpp's UGM tokenizer does not do".into(),
        ));
    }
    let list = model.get("vocab").and_then(Value::as_array).ok_or_else(|| bad("model.vocab is not a list".into()))?;
    if list.is_empty() || list.len() > MAX_PIECES {
        return Err(bad(format!("model.vocab has {} pieces", list.len())));
    }
    let mut vocab = Vocab { tokens: Vec::new(), scores: Vec::new(), types: Vec::new() };
    for (i, entry) in list.iter().enumerate() {
        let pair = entry.as_array().filter(|p| p.len() == 2);
        let piece = pair.and_then(|p| p[0].as_str()).filter(|t| !t.is_empty());
        let score = pair.and_then(|p| p[1].as_f64()).filter(|s| s.is_finite() && s.abs() <= f64::from(f32::MAX));
        let (Some(piece), Some(score)) = (piece, score) else {
            return Err(bad(format!("model.vocab[{i}] is not a [piece, score] pair: {}", brief(entry))));
        };
        vocab.tokens.push(piece.to_string());
        vocab.scores.push(score as f32);
        vocab.types.push(NORMAL);
    }
    let pieces = vocab.tokens.len();
    let unk = match model.get("unk_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|id| *id < pieces as u64)
                .ok_or_else(|| bad(format!("model.unk_id {v} is not a piece's id")))? as u32,
        ),
    };
    let n = pieces.max(vocab_size.unwrap_or(0));
    vocab.pad_to(n);

    // Added tokens override the pieces at their ids: special ones are control tokens, others
    // user-defined (matched in text before the unigram model runs).
    let mut added = Vec::new();
    for a in tokenizer.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
        let id = a.get("id").and_then(Value::as_u64);
        let text = a.get("content").and_then(Value::as_str).filter(|t| !t.is_empty());
        let (Some(id), Some(text)) = (id, text) else {
            return Err(bad(format!("an added token without id or content: {}", brief(a))));
        };
        let Some(i) = usize::try_from(id).ok().filter(|i| *i < n) else {
            return Err(bad(format!("added token {text:?} has id {id}, outside the vocabulary of {n}")));
        };
        vocab.tokens[i] = text.to_string();
        vocab.types[i] = if a.get("special").and_then(Value::as_bool) == Some(true) { CONTROL } else { USER_DEFINED };
        if i >= pieces {
            vocab.scores[i] = 0.0;
        }
        added.push((text.to_string(), i as u32));
    }

    let mut norm = Normalizer::default();
    normalizer(tokenizer.get("normalizer").unwrap_or(&Value::Null), 0, &mut norm)?;
    let (prefix, split) = pre_tokenizer(tokenizer.get("pre_tokenizer").unwrap_or(&Value::Null))?;
    let sources = Sources {
        tokens: &vocab.tokens,
        added: &added,
        post_processor: tokenizer.get("post_processor").filter(|p| !p.is_null()),
        tokenizer_config,
        model_config,
        unk,
    };
    let found = specials::find(&sources);
    Ok(finish(vocab, found, prefix, norm.collapse_spaces || split, norm.charsmap))
}

/// The `tokenizer.*` keys of XLM-RoBERTa's SentencePiece model (`sentencepiece.bpe.model`),
/// padded to `vocab_size` ids.
///
/// fairseq trained XLM-R with its own dictionary in front of SentencePiece's pieces, and the
/// model's embeddings are in that order: `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, then
/// SentencePiece's piece `i` at id `i + 1` (its own first three, `<unk>` `<s>` `</s>`, are the
/// specials), then `<mask>` after the last piece. Hugging Face's `tokenizer.json` is already in
/// this order; here it is rebuilt from the model file. llama.cpp's converter rebuilds the same
/// order except that it leaves the last id as an unused `[PAD…]` where `<mask>` belongs.
pub fn from_fairseq_sentencepiece(
    bytes: &[u8],
    tokenizer_config: &Value,
    model_config: &Value,
    vocab_size: Option<usize>,
) -> Result<Vec<(String, MetaValue)>, ConvertError> {
    let rename = |e: ConvertError| {
        ConvertError::Invalid(e.to_string().replacen("tokenizer.model", "sentencepiece.bpe.model", 1))
    };
    let model = Model::parse(bytes).map_err(rename)?;
    if !model.unigram {
        return Err(ConvertError::Unsupported("sentencepiece.bpe.model: not a unigram model".into()));
    }
    let kinds: Vec<i32> = model.pieces.iter().take(3).map(|p| p.kind).collect();
    if kinds != [UNKNOWN, CONTROL, CONTROL] {
        return Err(ConvertError::Invalid(
            "sentencepiece.bpe.model: its first pieces are not <unk>, <s>, </s> as XLM-RoBERTa's are".into(),
        ));
    }
    let mut vocab = Vocab {
        tokens: ["<s>", "<pad>", "</s>", "<unk>"].map(String::from).to_vec(),
        scores: vec![0.0; 4],
        types: vec![CONTROL, CONTROL, CONTROL, UNKNOWN],
    };
    for p in &model.pieces[3..] {
        vocab.tokens.push(p.text.clone());
        vocab.scores.push(p.score);
        vocab.types.push(p.kind);
    }
    vocab.tokens.push("<mask>".into());
    vocab.scores.push(0.0);
    vocab.types.push(CONTROL);
    vocab.pad_to(vocab_size.unwrap_or(0));
    let charsmap = (!model.precompiled_charsmap.is_empty()).then_some(model.precompiled_charsmap);
    if let Some(map) = &charsmap {
        check_charsmap(map, "sentencepiece.bpe.model")?;
    }
    // XLM-R's tokenizer puts `<s> A </s>` around a text and `<s> A </s></s> B </s>` around a pair.
    let post = serde_json::json!({"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0]});
    let sources = Sources {
        tokens: &vocab.tokens,
        added: &[],
        post_processor: Some(&post),
        tokenizer_config,
        model_config,
        unk: Some(3),
    };
    let found = specials::find(&sources);
    Ok(finish(vocab, found, model.add_dummy_prefix, model.remove_extra_whitespaces, charsmap))
}

/// The keys, once the vocabulary and the normalizer are known. The special tokens named by
/// their text are control tokens (as Hugging Face's `all_special_ids` are in llama.cpp's
/// converter), the unknown token excepted, which is the unknown type.
fn finish(
    mut vocab: Vocab,
    found: Specials,
    add_space_prefix: bool,
    remove_extra_whitespaces: bool,
    charsmap: Option<Vec<u8>>,
) -> Vec<(String, MetaValue)> {
    for id in &found.named {
        let t = &mut vocab.types[*id as usize];
        if *t != UNKNOWN {
            *t = CONTROL;
        }
    }
    if let Some(unk) = found.ids.get("unk") {
        vocab.types[*unk as usize] = UNKNOWN;
    }
    let mut keys = vec![
        ("tokenizer.ggml.model".to_string(), MetaValue::String("t5".into())),
        ("tokenizer.ggml.pre".into(), MetaValue::String("default".into())),
        ("tokenizer.ggml.tokens".into(), MetaValue::Array(ArrayValue::String(vocab.tokens))),
        ("tokenizer.ggml.scores".into(), MetaValue::Array(ArrayValue::F32(vocab.scores))),
        ("tokenizer.ggml.token_type".into(), MetaValue::Array(ArrayValue::I32(vocab.types))),
        ("tokenizer.ggml.add_space_prefix".into(), MetaValue::Bool(add_space_prefix)),
        ("tokenizer.ggml.remove_extra_whitespaces".into(), MetaValue::Bool(remove_extra_whitespaces)),
    ];
    if let Some(map) = charsmap {
        keys.push(("tokenizer.ggml.precompiled_charsmap".into(), MetaValue::Array(ArrayValue::U8(map))));
    }
    keys.extend(found.keys());
    keys
}

#[cfg(test)]
#[path = "unigram_tests.rs"]
mod tests;
