//! all-MiniLM-L6-v2 converted from its safetensors and run by llama.cpp gives sentence-transformers'
//! embeddings: cosine ≥ 0.999 in F16 and ≥ 0.995 in Q8_0, for every golden text, with the texts
//! embedded together in one batch.

use std::collections::BTreeMap;

use corral_convert::{convert, Quantize};
use corral_engine::{Engine, LlamaEngine};
use corral_types::runner::{EmbedRequest, LoadOptions};

fn files() -> BTreeMap<String, std::path::PathBuf> {
    let dir = corral_testkit::minilm_dir();
    let mut files = BTreeMap::new();
    for name in ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "1_Pooling/config.json"] {
        files.insert(name.to_string(), dir.join(name));
    }
    files
}

/// The GGUF at `path` loaded for embeddings (or scores), `parallel` inputs at a time, one thread.
fn embedder(path: &std::path::Path, parallel: u32) -> LlamaEngine {
    let opts = LoadOptions {
        model_path: path.display().to_string(),
        num_ctx: 512,
        parallel,
        num_batch: 512,
        num_thread: 1,
        num_gpu: 0,
        embedding: true,
        ..Default::default()
    };
    LlamaEngine::load(opts, |_| {}).unwrap()
}

#[test]
fn minilm_matches_sentence_transformers() {
    let (texts, goldens) = corral_testkit::minilm_goldens();
    let tmp = tempfile::tempdir().unwrap();
    for (quantize, floor) in [(Quantize::F16, 0.999), (Quantize::Q8_0, 0.995)] {
        let (writer, info) = convert(&files(), quantize).unwrap();
        assert_eq!((info.architecture.as_str(), info.tensors), ("bert", 101));
        let path = tmp.path().join(format!("{quantize:?}.gguf"));
        writer.write_to(std::fs::File::create(&path).unwrap()).unwrap();
        let engine = embedder(&path, 4);
        let out = engine.embed(EmbedRequest { inputs: texts.clone(), truncate: true, query: None }).unwrap();
        assert_eq!(out.vectors.len(), 3);
        for (i, (got, want)) in out.vectors.iter().zip(&goldens).enumerate() {
            let cos = corral_testkit::cosine(got, want);
            assert!(cos >= floor, "{quantize:?} text {i}: cosine {cos} < {floor}");
            eprintln!("{quantize:?} text {i}: cosine {cos:.6}");
        }
        // [CLS] and [SEP] around each text are counted.
        assert!(out.prompt_tokens > 3 * 2);
    }
}

#[test]
fn other_architectures_are_refused_with_their_name() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.json");
    std::fs::write(&config, r#"{"architectures": ["FalconForCausalLM"], "model_type": "falcon"}"#).unwrap();
    let files = BTreeMap::from([("config.json".to_string(), config)]);
    let err = convert(&files, Quantize::F16).err().unwrap().to_string();
    assert!(err.contains("unsupported architecture (FalconForCausalLM)"), "{err}");
}

/// MiniLM's encoder with a classifier head of random weights, as a Hugging Face cross-encoder
/// (`BertForSequenceClassification`) directory has it: its pooler (already in MiniLM's file) and
/// `classifier` over one label.
fn cross_encoder(dir: &std::path::Path) -> BTreeMap<String, std::path::PathBuf> {
    let mut files = files();
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&files["config.json"]).unwrap()).unwrap();
    config["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
    config["id2label"] = serde_json::json!({"0": "LABEL_0"});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    files.insert("config.json".into(), dir.join("config.json"));
    files.remove("1_Pooling/config.json");
    let weights: Vec<f32> = (0..384).map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.2).collect();
    let head = dir.join("model-00002.safetensors");
    corral_testkit::write_safetensors(
        &head,
        &[("classifier.weight".into(), vec![1, 384], weights), ("classifier.bias".into(), vec![1], vec![0.1])],
    );
    files.insert("model-00002.safetensors".into(), head);
    files
}

#[test]
fn issue_29_a_cross_encoder_becomes_a_reranker() {
    let tmp = tempfile::tempdir().unwrap();
    let (writer, info) = convert(&cross_encoder(tmp.path()), Quantize::F16).unwrap();
    // MiniLM's 101 tensors, its pooler as `cls` and the classifier as `cls.output`.
    assert_eq!(info.tensors, 105);
    let path = tmp.path().join("reranker.gguf");
    writer.write_to(std::fs::File::create(&path).unwrap()).unwrap();
    let g = corral_gguf::read_path(&path).unwrap();
    assert_eq!(g.get_u64("bert.pooling_type"), Some(4));
    assert!(g.tensors.iter().any(|t| t.name == "cls.output.weight" && t.dims == [384, 1]));
    let engine = embedder(&path, 2);
    let documents = ["A panda is a bear.", "The stock market fell today."];
    let request = |query: &str| EmbedRequest {
        inputs: documents.map(String::from).to_vec(),
        truncate: true,
        query: Some(query.into()),
    };
    let out = engine.embed(request("what is a panda?")).unwrap();
    let scores: Vec<f32> = out.vectors.iter().map(|v| v[0]).collect();
    assert!(out.vectors.iter().all(|v| v.len() == 1) && scores.iter().all(|s| s.is_finite()), "{:?}", out.vectors);
    assert!((scores[0] - scores[1]).abs() > 1e-4, "{scores:?}");
    // [CLS] query [SEP] document [SEP]: the words of both and three special tokens per pair.
    let words = |t: &str| engine.tokenize(t).unwrap().len() - 2;
    let want: usize = documents.iter().map(|d| words("what is a panda?") + words(d) + 3).sum();
    assert_eq!(out.prompt_tokens as usize, want);
}
