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

#[test]
fn minilm_matches_sentence_transformers() {
    let (texts, goldens) = corral_testkit::minilm_goldens();
    let tmp = tempfile::tempdir().unwrap();
    for (quantize, floor) in [(Quantize::F16, 0.999), (Quantize::Q8_0, 0.995)] {
        let (writer, info) = convert(&files(), quantize).unwrap();
        assert_eq!((info.architecture.as_str(), info.tensors), ("bert", 101));
        let path = tmp.path().join(format!("{quantize:?}.gguf"));
        writer.write_to(std::fs::File::create(&path).unwrap()).unwrap();
        let engine = LlamaEngine::load(
            LoadOptions {
                model_path: path.display().to_string(),
                adapters: vec![],
                num_ctx: 512,
                parallel: 4,
                num_batch: 512,
                num_thread: 1,
                num_gpu: 0,
                embedding: true,
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
        let out = engine.embed(EmbedRequest { inputs: texts.clone(), truncate: true }).unwrap();
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
