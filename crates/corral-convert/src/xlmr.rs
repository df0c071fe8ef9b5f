//! XLM-RoBERTa encoders to llama.cpp's `bert` architecture, as llama.cpp's converter writes
//! them: `XLMRobertaModel` embedding models (bge-m3 and the like) and
//! `XLMRobertaForSequenceClassification` cross-encoders (bge-reranker-base and -v2-m3,
//! mixedbread's and other rerankers built on XLM-R), which become rerankers (RANK pooling).
//!
//! The network is BERT's, so the tensors take the same GGUF names once their `roberta.` prefix is
//! gone; three things differ:
//!
//! - positions: RoBERTa numbers a text's positions from `pad_token_id + 1` (fairseq reserved the
//!   rows below for padding), where llama.cpp numbers them from 0; the first `pad_token_id + 1`
//!   rows of `position_embeddings` are dropped, and the context is that many positions shorter
//!   (XLM-R's 514 rows give 512).
//! - the classification head: `classifier.dense` (a square matrix, then tanh) becomes `cls`, and
//!   `classifier.out_proj` (one row per label) `cls.output`; llama.cpp applies both to the first
//!   token's state, as Hugging Face's `RobertaClassificationHead` does. The label names go to
//!   `bert.classifier.output_labels`, which llama.cpp also counts its outputs by.
//! - the tokenizer: SentencePiece's unigram model ([`crate::unigram`]), for llama.cpp's UGM
//!   tokenizer, rather than WordPiece.
//!
//! Where this differs from llama.cpp's converter: it writes `bert.pooling_type` = 4 (RANK) for a
//! cross-encoder, which llama.cpp's leaves to the command line, so the file is a reranker by
//! itself; and it writes the labels also when `id2label` holds Hugging Face's two placeholder
//! labels, which llama.cpp's drops although its model then expects one output where the
//! classifier has two.

use corral_gguf::{ArrayValue, GgufWriter, MetaValue};
use serde_json::Value;

use crate::{encoder, hparam, read, read_json, unigram, ConvertError, Converted, Files, Quantize};

/// The architectures `config.json` lists.
fn architectures(config: &Value) -> Vec<&str> {
    config.get("architectures").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect()
}

/// Whether `config.json` describes an XLM-RoBERTa model.
pub fn is_xlmr(config: &Value) -> bool {
    config.get("model_type").and_then(Value::as_str) == Some("xlm-roberta")
        || architectures(config).iter().any(|a| a.starts_with("XLMRoberta"))
}

/// GGUF's name of an XLM-RoBERTa tensor, or `None` for one llama.cpp does not use (the
/// embedding model's pooler, buffers such as `position_ids`, the head of a model that is not a
/// cross-encoder).
fn gguf_name(hf: &str, classifier: bool) -> Option<String> {
    let hf = hf.strip_prefix("roberta.").unwrap_or(hf);
    let head = match hf {
        "classifier.dense.weight" => "cls.weight",
        "classifier.dense.bias" => "cls.bias",
        "classifier.out_proj.weight" => "cls.output.weight",
        "classifier.out_proj.bias" => "cls.output.bias",
        _ if hf.starts_with("pooler.") || hf.starts_with("classifier.") => return None,
        _ => return encoder::bert_name(hf, false),
    };
    classifier.then(|| head.to_string())
}

/// The pooling of an embedding model, from its sentence-transformers pooling module (named in
/// `modules.json`, usually `1_Pooling`): mean (1), the first token (2) or the last (3). Without
/// one, mean, as for BERT.
fn pooling(files: &Files) -> Result<u32, ConvertError> {
    let module = read_json(files, "modules.json")?.and_then(|m| {
        let pooling = m
            .as_array()?
            .iter()
            .find(|x| x.get("type").and_then(Value::as_str).is_some_and(|t| t.ends_with("Pooling")))?;
        Some(pooling.get("path")?.as_str()?.trim_start_matches("./").trim_end_matches('/').to_string())
    });
    let name = format!("{}/config.json", module.as_deref().unwrap_or("1_Pooling"));
    let Some(p) = read_json(files, &name)? else { return Ok(1) };
    let on = |key: &str| p.get(key).and_then(Value::as_bool) == Some(true);
    Ok(match p.get("pooling_mode").and_then(Value::as_str) {
        _ if on("pooling_mode_mean_tokens") => 1,
        _ if on("pooling_mode_cls_token") => 2,
        _ if on("pooling_mode_lasttoken") => 3,
        Some("mean") => 1,
        Some("cls") => 2,
        Some("lasttoken") => 3,
        _ => {
            return Err(ConvertError::Unsupported(format!(
                "{name}: a pooling other than mean, CLS or last token, which llama.cpp does not do"
            )))
        }
    })
}

/// `tokenizer_config.json` over the special tokens XLM-R's tokenizer has when it names none.
fn tokenizer_config(files: &Files) -> Result<Value, ConvertError> {
    let mut config = serde_json::json!({
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
    });
    if let Some(Value::Object(file)) = read_json(files, "tokenizer_config.json")? {
        for (k, v) in file {
            config[k] = v;
        }
    }
    Ok(config)
}

/// The classifier's label names in id order: `id2label`'s, or `LABEL_<i>` for each of the
/// `outputs` rows of `classifier.out_proj` when `config.json` names none.
fn labels(config: &Value, outputs: u64) -> Result<Vec<String>, ConvertError> {
    let Some(map) = config.get("id2label").and_then(Value::as_object) else {
        return Ok((0..outputs).map(|i| format!("LABEL_{i}")).collect());
    };
    let mut named = Vec::new();
    for (id, name) in map {
        let (Ok(id), Some(name)) = (id.parse::<u64>(), name.as_str()) else {
            return Err(ConvertError::Invalid(format!("config.json: id2label has {id:?}: {name}")));
        };
        named.push((id, name.to_string()));
    }
    named.sort();
    if named.iter().enumerate().any(|(i, (id, _))| *id != i as u64) || named.len() as u64 != outputs {
        return Err(ConvertError::Invalid(format!(
            "config.json: id2label names {} labels, the classifier (classifier.out_proj) has {outputs} outputs",
            named.len()
        )));
    }
    Ok(named.into_iter().map(|(_, n)| n).collect())
}

/// Converts the XLM-RoBERTa model in `files` (with its parsed `config.json`).
pub fn convert(files: &Files, config: &Value, quantize: Quantize) -> Result<(GgufWriter, Converted), ConvertError> {
    let archs = architectures(config);
    let classifier = archs.contains(&"XLMRobertaForSequenceClassification");
    if !classifier && !archs.is_empty() && !archs.contains(&"XLMRobertaModel") {
        return Err(ConvertError::Unsupported(format!(
            "unsupported architecture ({}): of XLM-RoBERTa models Corral converts XLMRobertaModel and XLMRobertaForSequenceClassification",
            archs.join(", ")
        )));
    }
    if config.get("lora_adaptations").is_some() {
        return Err(ConvertError::Unsupported(
            "config.json: an XLM-RoBERTa model with LoRA adaptations (jina-embeddings-v3) is not supported".into(),
        ));
    }
    for (key, want) in [("hidden_act", "gelu"), ("position_embedding_type", "absolute")] {
        match config.get(key).and_then(Value::as_str) {
            Some(v) if v != want => {
                return Err(ConvertError::Unsupported(format!(
                    "config.json: {key} {v:?}: llama.cpp's BERT needs {want:?}"
                )))
            }
            _ => {}
        }
    }
    let (embd, ffn, layers, heads) = (
        hparam(config, "hidden_size")?,
        hparam(config, "intermediate_size")?,
        hparam(config, "num_hidden_layers")?,
        hparam(config, "num_attention_heads")?,
    );
    let positions = hparam(config, "max_position_embeddings")?;
    // The rows before `pad_token_id + 1` are positions no token ever takes (see the module docs).
    let offset = match config.get("pad_token_id") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().filter(|p| *p < positions).map(|p| p + 1).ok_or_else(|| {
            ConvertError::Invalid(format!("config.json: pad_token_id {v} is not below max_position_embeddings"))
        })?,
    };
    let ctx = positions - offset;
    if ctx == 0 {
        return Err(ConvertError::Invalid("config.json: no positions are left after the padding offset".into()));
    }
    let eps = config.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(1e-12) as f32;
    let type_vocab = config.get("type_vocab_size").and_then(Value::as_u64).unwrap_or(1);
    if type_vocab == 0 || type_vocab > 1 << 16 {
        return Err(ConvertError::Invalid(format!("config.json: type_vocab_size {type_vocab}")));
    }
    let pooling = if classifier { 4 } else { pooling(files)? };

    let vocab_size = config.get("vocab_size").and_then(Value::as_u64).filter(|n| *n <= 1 << 24).map(|n| n as usize);
    let tokenizer_config = tokenizer_config(files)?;
    let tokenizer = if let Some(json) = read_json(files, "tokenizer.json")? {
        unigram::from_tokenizer_json(&json, &tokenizer_config, config, vocab_size)?
    } else if let Some(model) = read(files, "sentencepiece.bpe.model")? {
        unigram::from_fairseq_sentencepiece(&model, &tokenizer_config, config, vocab_size)?
    } else {
        return Err(ConvertError::Invalid(
            "the model directory has no tokenizer.json and no sentencepiece.bpe.model".into(),
        ));
    };
    let n_tokens = tokenizer.iter().find_map(|(k, v)| match v {
        MetaValue::Array(ArrayValue::String(t)) if k == "tokenizer.ggml.tokens" => Some(t.len() as u64),
        _ => None,
    });

    let shape = encoder::Shape { ctx, embd, ffn, layers, heads, eps, pooling };
    let mut w = encoder::header(config, "xlm-roberta", quantize, &shape);
    w.set("tokenizer.ggml.token_type_count", MetaValue::U32(type_vocab as u32));
    for (key, value) in tokenizer {
        w.set(&key, value);
    }

    let drop_rows = |gguf: &str, mut t: crate::safetensors::Tensor| {
        if gguf != "position_embd.weight" || offset == 0 {
            return Ok(t);
        }
        if t.shape.len() != 2 || t.shape[0] != positions {
            return Err(ConvertError::Invalid(format!(
                "embeddings.position_embeddings is {:?}, expected {positions} rows (max_position_embeddings)",
                t.shape
            )));
        }
        t.values.drain(..(offset * t.shape[1]) as usize);
        t.shape[0] -= offset;
        Ok(t)
    };
    let written = encoder::add_tensors(files, &mut w, quantize, |hf| gguf_name(hf, classifier), drop_rows)?;
    let mut required = encoder::required(layers);
    if classifier {
        required.extend(["cls.weight".into(), "cls.output.weight".into()]);
    }
    written.require(required.iter().map(String::as_str))?;
    written.expect("token_embd.weight", &[embd, n_tokens.unwrap_or(0)])?;
    written.expect("position_embd.weight", &[embd, ctx])?;
    written.expect("token_types.weight", &[embd, type_vocab])?;
    written.expect("cls.weight", &[embd, embd])?;
    if classifier {
        let outputs = match written.dims["cls.output.weight"].as_slice() {
            [e, n] if *e == embd && *n > 0 => *n,
            other => {
                return Err(ConvertError::Invalid(format!(
                    "tensor cls.output.weight (classifier.out_proj) is {other:?}, expected [{embd}, labels]"
                )))
            }
        };
        written.expect("cls.output.bias", &[outputs])?;
        w.set("bert.classifier.output_labels", MetaValue::Array(ArrayValue::String(labels(config, outputs)?)));
    }
    let converted =
        Converted { architecture: "bert".into(), tensors: written.dims.len(), parameters: written.parameters };
    Ok((w, converted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tensors_lose_the_roberta_prefix_and_the_head_becomes_cls() {
        assert_eq!(gguf_name("roberta.embeddings.word_embeddings.weight", true).as_deref(), Some("token_embd.weight"));
        assert_eq!(
            gguf_name("roberta.encoder.layer.3.attention.output.LayerNorm.bias", false).as_deref(),
            Some("blk.3.attn_output_norm.bias")
        );
        assert_eq!(
            gguf_name("encoder.layer.0.intermediate.dense.weight", false).as_deref(),
            Some("blk.0.ffn_up.weight")
        );
        assert_eq!(gguf_name("classifier.dense.weight", true).as_deref(), Some("cls.weight"));
        assert_eq!(gguf_name("classifier.out_proj.bias", true).as_deref(), Some("cls.output.bias"));
        for dropped in ["classifier.dense.weight", "pooler.dense.weight", "roberta.pooler.dense.bias"] {
            assert_eq!(gguf_name(dropped, false), None, "{dropped}");
        }
        assert_eq!(gguf_name("roberta.embeddings.position_ids", true), None);
        assert_eq!(gguf_name("roberta.pooler.dense.weight", true), None);
    }

    #[test]
    fn labels_come_from_id2label_or_the_classifier() {
        let config = json!({"id2label": {"1": "yes", "0": "no"}});
        assert_eq!(labels(&config, 2).unwrap(), ["no", "yes"]);
        assert_eq!(labels(&json!({}), 2).unwrap(), ["LABEL_0", "LABEL_1"]);
        let err = labels(&json!({"id2label": {"0": "LABEL_0"}}), 3).unwrap_err().to_string();
        assert!(err.contains("names 1 labels") && err.contains("3 outputs"), "{err}");
        assert!(labels(&json!({"id2label": {"x": "LABEL_0"}}), 1).is_err());
    }

    #[test]
    fn xlm_roberta_is_recognised_by_type_or_architecture() {
        assert!(is_xlmr(&json!({"model_type": "xlm-roberta"})));
        assert!(is_xlmr(&json!({"architectures": ["XLMRobertaForSequenceClassification"]})));
        assert!(!is_xlmr(&json!({"model_type": "bert", "architectures": ["BertModel"]})));
    }
}
