//! SentencePiece's `tokenizer.model` (a protocol-buffer `ModelProto`) to GGUF's `tokenizer.*`
//! keys of llama.cpp's `llama` (SentencePiece) tokenizer: each piece's text, score and type, as
//! llama.cpp's converter writes them (Gemma, Mistral v0.1, TinyLlama).
//!
//! Only what the tokenizer needs is read: the pieces (field 1: text, score, type), the trainer's
//! model type (field 3 of field 2) and the normalizer's precompiled character map, `add_dummy_prefix`
//! and `remove_extra_whitespaces` (fields 2, 3 and 4 of field 3). The reader is bounded: every length is
//! checked against what is left of the buffer, unknown fields are skipped by their wire type, and
//! anything malformed is an error that says where, never a panic or a long loop.

use serde_json::Value;

use crate::tokenizer::special_token_keys;
use crate::ConvertError;
use corral_gguf::{ArrayValue, MetaValue};

/// One vocabulary entry. `kind` is SentencePiece's type, which GGUF's token types share
/// (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub score: f32,
    pub kind: i32,
}

/// What a `tokenizer.model` holds for llama.cpp.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub pieces: Vec<Piece>,
    /// Whether the normalizer puts a space before the text (SentencePiece's default: yes).
    pub add_dummy_prefix: bool,
    /// Whether the normalizer drops leading, trailing and repeated spaces (default: yes).
    pub remove_extra_whitespaces: bool,
    /// The normalizer's compiled character map (empty: none).
    pub precompiled_charsmap: Vec<u8>,
    /// Whether the model is a unigram one (the trainer's `model_type` 1, the default), not BPE,
    /// word or character.
    pub unigram: bool,
}

/// A field's value by wire type.
enum Field<'a> {
    Varint(u64),
    Fixed32([u8; 4]),
    Fixed64,
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad(m: String) -> ConvertError {
    ConvertError::Invalid(format!("tokenizer.model: {m}"))
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, ConvertError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or_else(|| bad(format!("a varint cut off at byte {}", self.pos)))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad(format!("a varint longer than ten bytes before byte {}", self.pos)))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], ConvertError> {
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(bad(format!("a field of {n} bytes at byte {} where {left} are left", self.pos)));
        }
        let out = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(out)
    }

    /// The next field number and value; `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Field<'a>)>, ConvertError> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = self.varint()?;
                Field::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Field::Fixed32([b[0], b[1], b[2], b[3]])
            }
            wire => return Err(bad(format!("wire type {wire} at byte {}", self.pos))),
        };
        Ok(Some((key >> 3, value)))
    }
}

/// Most pieces a model may have (Gemma's 262,144 is far below).
const MAX_PIECES: usize = 1 << 22;

impl Model {
    pub fn parse(bytes: &[u8]) -> Result<Model, ConvertError> {
        let mut pieces = Vec::new();
        let mut add_dummy_prefix = true;
        let mut remove_extra_whitespaces = true;
        let mut precompiled_charsmap = Vec::new();
        let mut unigram = true;
        let mut top = Reader::new(bytes);
        while let Some((number, value)) = top.field()? {
            match (number, value) {
                (1, Field::Bytes(b)) => {
                    if pieces.len() == MAX_PIECES {
                        return Err(bad(format!("more than {MAX_PIECES} pieces")));
                    }
                    pieces.push(piece(b, pieces.len())?);
                }
                (2, Field::Bytes(b)) => {
                    let mut trainer = Reader::new(b);
                    while let Some((number, value)) = trainer.field()? {
                        if let (3, Field::Varint(v)) = (number, value) {
                            unigram = v == 1;
                        }
                    }
                }
                (3, Field::Bytes(b)) => {
                    let mut normalizer = Reader::new(b);
                    while let Some((number, value)) = normalizer.field()? {
                        match (number, value) {
                            (2, Field::Bytes(map)) => precompiled_charsmap = map.to_vec(),
                            (3, Field::Varint(v)) => add_dummy_prefix = v != 0,
                            (4, Field::Varint(v)) => remove_extra_whitespaces = v != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if pieces.is_empty() {
            return Err(bad("no pieces: not a SentencePiece model".into()));
        }
        Ok(Model { pieces, add_dummy_prefix, remove_extra_whitespaces, precompiled_charsmap, unigram })
    }
}

fn piece(bytes: &[u8], index: usize) -> Result<Piece, ConvertError> {
    let mut p = Piece { text: String::new(), score: 0.0, kind: 1 };
    let mut r = Reader::new(bytes);
    while let Some((number, value)) = r.field()? {
        match (number, value) {
            (1, Field::Bytes(b)) => {
                p.text = String::from_utf8(b.to_vec()).map_err(|_| bad(format!("piece {index} is not UTF-8")))?
            }
            (2, Field::Fixed32(b)) => p.score = f32::from_le_bytes(b),
            (3, Field::Varint(kind)) if (1..=6).contains(&kind) => p.kind = kind as i32,
            (3, Field::Varint(kind)) => return Err(bad(format!("piece {index} has type {kind}"))),
            _ => {}
        }
    }
    Ok(p)
}

/// Whether an added token's text looks like a control token, as llama.cpp's converter judges
/// ones not marked special (`<|…|>`, Gemma's `<unused…>`, `<pad>`, `<mask>`).
fn looks_special(text: &str) -> bool {
    matches!(text, "<pad>" | "<mask>")
        || (text.starts_with("<|") && text.ends_with("|>"))
        || (text.starts_with("<｜") && text.ends_with("｜>"))
        || (text.starts_with("<unused") && text.ends_with('>'))
}

/// The `tokenizer.*` keys for `model`, with the added tokens and special tokens of
/// `tokenizer_config.json` (`config`), padded to `vocab_size`. `space_prefix` overrides the
/// model's own `add_dummy_prefix` (llama.cpp writes false for Gemma whatever the model says).
pub fn keys(
    model: Model,
    config: &Value,
    model_config: &Value,
    vocab_size: Option<usize>,
    space_prefix: Option<bool>,
) -> Result<Vec<(String, MetaValue)>, ConvertError> {
    let mut tokens: Vec<String> = Vec::with_capacity(model.pieces.len());
    let mut scores = Vec::with_capacity(model.pieces.len());
    let mut types = Vec::with_capacity(model.pieces.len());
    for p in model.pieces {
        tokens.push(p.text);
        scores.push(p.score);
        types.push(p.kind);
    }
    let limit = vocab_size.unwrap_or(tokens.len()).max(tokens.len());
    if let Some(added) = config.get("added_tokens_decoder").and_then(Value::as_object) {
        for (id, data) in added {
            let Some(id) = id.parse::<usize>().ok().filter(|id| *id < limit) else {
                return Err(bad(format!("added token id {id:?} is outside the vocabulary of {limit}")));
            };
            let text = data.get("content").and_then(Value::as_str).ok_or_else(|| bad(format!("added token {id}")))?;
            if id >= tokens.len() {
                let n = tokens.len();
                tokens.extend((n..=id).map(|i| format!("[PAD{i}]")));
                scores.resize(id + 1, -1000.0);
                types.resize(id + 1, 5);
            }
            let special = data.get("special").and_then(Value::as_bool) == Some(true) || looks_special(text);
            // A user-defined token's spaces are written as spaces, as llama.cpp's tokenizer
            // matches them before it turns spaces into '▁'.
            tokens[id] = if special { text.to_string() } else { text.replace('\u{2581}', " ") };
            types[id] = if special { 3 } else { 4 };
            scores[id] = -1000.0;
        }
    }
    if let Some(n) = vocab_size {
        if n < tokens.len() {
            return Err(bad(format!("{} pieces, more than the model's {n} token embeddings", tokens.len())));
        }
        let start = tokens.len();
        tokens.extend((start..n).map(|i| format!("[PAD{i}]")));
        scores.resize(n, -1000.0);
        types.resize(n, 5);
    }

    let unknown = types.iter().position(|t| *t == 2).map(|i| i as u32);
    let mut keys = vec![
        ("tokenizer.ggml.model".to_string(), MetaValue::String("llama".into())),
        ("tokenizer.ggml.pre".into(), MetaValue::String("default".into())),
        ("tokenizer.ggml.add_space_prefix".into(), MetaValue::Bool(space_prefix.unwrap_or(model.add_dummy_prefix))),
    ];
    let mut special = special_token_keys(&tokens, config, model_config);
    if let Some(id) = unknown.filter(|_| !special.iter().any(|(k, _)| k == "tokenizer.ggml.unknown_token_id")) {
        special.push(("tokenizer.ggml.unknown_token_id".into(), MetaValue::U32(id)));
    }
    keys.extend(special);
    keys.extend([
        ("tokenizer.ggml.tokens".into(), MetaValue::Array(ArrayValue::String(tokens))),
        ("tokenizer.ggml.scores".into(), MetaValue::Array(ArrayValue::F32(scores))),
        ("tokenizer.ggml.token_type".into(), MetaValue::Array(ArrayValue::I32(types))),
    ]);
    for (key, field) in
        [("tokenizer.ggml.add_bos_token", "add_bos_token"), ("tokenizer.ggml.add_eos_token", "add_eos_token")]
    {
        if let Some(v) = config.get(field).and_then(Value::as_bool) {
            keys.push((key.into(), MetaValue::Bool(v)));
        }
    }
    if let Some(template) = config.get("chat_template").and_then(Value::as_str) {
        keys.push(("tokenizer.chat_template".into(), MetaValue::String(template.into())));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_testkit::sentencepiece_model;

    fn pieces(list: &[(&str, f32, i32)]) -> Vec<(String, f32, i32)> {
        list.iter().map(|(t, s, k)| (t.to_string(), *s, *k)).collect()
    }

    #[test]
    fn pieces_and_the_normalizer_flag_are_read() {
        let mut m = sentencepiece_model(&pieces(&[("<unk>", 0.0, 2), ("▁the", -1.5, 1)]), false);
        m.extend([2 << 3 | 2, 2, 8, 1]); // a trainer spec (field 2), skipped
        let model = Model::parse(&m).unwrap();
        assert!(!model.add_dummy_prefix);
        assert_eq!(model.pieces[1], Piece { text: "▁the".into(), score: -1.5, kind: 1 });

        let keys = keys(model, &serde_json::json!({"add_bos_token": true}), &Value::Null, Some(4), None).unwrap();
        let get = |k: &str| keys.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("tokenizer.ggml.unknown_token_id"), Some(MetaValue::U32(0)));
        assert_eq!(get("tokenizer.ggml.add_space_prefix"), Some(MetaValue::Bool(false)));
        assert_eq!(get("tokenizer.ggml.token_type"), Some(MetaValue::Array(ArrayValue::I32(vec![2, 1, 5, 5]))));
    }

    #[test]
    fn malformed_models_are_errors_that_say_where() {
        let m = sentencepiece_model(&pieces(&[("a", 0.0, 1)]), true);
        let err = |b: &[u8]| Model::parse(b).unwrap_err().to_string();
        assert!(err(&m[..m.len() - 2]).contains("where"), "{}", err(&m[..m.len() - 2]));
        assert!(err(&[0x0b]).contains("wire type 3"));
        assert!(err(&[0x80; 11]).contains("longer than ten bytes"));
        assert!(err(&[0x80; 3]).contains("cut off"));
        assert!(err(&[]).contains("no pieces"));
        assert!(err(&sentencepiece_model(&pieces(&[("a", 0.0, 9)]), true)).contains("type 9"));
    }
}
