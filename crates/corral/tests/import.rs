//! Issue 14: importing a decoder model from safetensors (`FROM <directory>`). No such model ships
//! anywhere reachable here, so the fixtures are SmolLM2 (llama, Q/K rows permuted by llama.cpp),
//! Qwen2.5-Coder-0.5B (qwen2, Q/K/V biases, Q5_0/Q4_K/Q6_K/Q8_0 weights) and Gemma 3 270M (gemma3:
//! four norms per block stored as `w - 1`, Q/K norms, a 262k SentencePiece vocabulary, tied
//! embeddings, sliding-window layers) exported back to Hugging Face directories
//! (`corral_testkit::export_hf`: dequantized F16 weights in shards with their index,
//! `config.json`, `tokenizer.json` or `tokenizer.model`, `tokenizer_config.json` with the chat
//! template and added tokens).
//! Each import must tokenize as the original (llama.cpp's goldens), answer the Paris question the
//! same, and give next-token log-probabilities within a small bound of the original's.

mod common;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use common::{post, stderr, Server};
use serde_json::{json, Value};

/// Each test here holds a model's weights as F16 several times over on disk (the exported
/// shards, their copies in the store, the converted GGUF, a quantized one): gigabytes for
/// Qwen2.5-Coder 0.5B. Side by side they ran a CI machine out of disk ("no space left on
/// device"); one at a time they need the largest one's share.
static DISK: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    DISK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn create(server: &Server, name: &str, from: &Path, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let modelfile = dir.path().join("Modelfile");
    std::fs::write(&modelfile, format!("FROM {}\n", from.display())).unwrap();
    let mut args = vec!["create", name, "-f", modelfile.to_str().unwrap()];
    args.extend_from_slice(extra);
    server.corral(&args)
}

/// The token ids of `text` as `model` tokenizes it (a template that is only the prompt).
fn tokens(server: &Server, model: &str, text: &str) -> Vec<u64> {
    let body = json!({"model": model, "prompt": text, "template": "{{ .Prompt }}", "stream": false,
        "options": {"num_predict": 1, "temperature": 0}});
    let (status, v) = post(server, "/api/generate", body);
    assert_eq!(status, 200, "{v}");
    let context: Vec<u64> = v["context"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect();
    context[..context.len() - 1].to_vec()
}

/// The top five next tokens and their log-probabilities at each of eight greedy steps after
/// `prompt`.
fn top_logprobs(server: &Server, model: &str, prompt: &str) -> Vec<Vec<(String, f64)>> {
    let body = json!({"model": model, "prompt": prompt, "raw": true, "stream": false, "logprobs": true,
        "top_logprobs": 5, "options": {"num_predict": 8, "temperature": 0}});
    let (status, v) = post(server, "/api/generate", body);
    assert_eq!(status, 200, "{v}");
    v["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            step["top_logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["token"].as_str().unwrap().to_string(), t["logprob"].as_f64().unwrap()))
                .collect()
        })
        .collect()
}

/// What an import is held to: llama.cpp's token ids for six strings (`goldens`, a key of the
/// fixture), the original's greedy answer, and log-probability differences under `first_bound` at
/// the first step and `bound` over the steps where both greedy continuations agree.
struct Expect {
    goldens: &'static str,
    family: &'static str,
    /// A piece of the chat template; `None`: the model has none (a base model), so it is asked to
    /// continue a story in raw mode instead of the Paris question.
    template_marker: Option<&'static str>,
    first_bound: f64,
    bound: f64,
}

/// Exports `original` into `shards` safetensors files, imports it as `imported`, and checks it
/// against the original as `expect` says. Returns the directory.
fn export_and_compare(server: &Server, original: &Path, shards: usize, expect: Expect) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    corral_testkit::export_hf(original, dir.path(), shards);
    let out = create(server, "original", original, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = create(server, "imported", dir.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, shown) = post(server, "/api/show", json!({"model": "imported"}));
    assert_eq!(shown["details"]["family"], expect.family, "{shown}");
    assert_eq!(shown["details"]["quantization_level"], "F16", "{shown}");
    if let Some(marker) = expect.template_marker {
        assert!(shown["template"].as_str().unwrap().contains(marker), "the chat template came along");
    }

    // Tokenization: llama.cpp's own ids for six strings.
    let goldens: Value = serde_json::from_str(include_str!("fixtures/tokenize.json")).expect("the goldens parse");
    let goldens = goldens["ids"][expect.goldens].as_object().unwrap();
    assert_eq!(goldens.len(), 6);
    for (text, ids) in goldens {
        let ids: Vec<u64> = ids.as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect();
        assert_eq!(tokens(server, "imported", text), ids, "{text:?}");
        assert_eq!(tokens(server, "original", text), ids, "{text:?}");
    }

    // The same greedy answer.
    if expect.template_marker.is_some() {
        let answer = ask(server, "original");
        assert!(answer.contains("Paris"), "{answer:?}");
        assert_eq!(ask(server, "imported"), answer);
    } else {
        // llama.cpp's own continuation (`../shared/models/goldens`) as far as it is clear-cut
        // (see `gemma.rs`).
        for model in ["original", "imported"] {
            let story = story(server, model);
            assert!(story.starts_with(", there was a "), "{model}: {story:?}");
        }
    }

    // Next-token log-probabilities, compared while both greedy continuations agree (after that
    // they read different text). The measure: for every token in both top fives, the absolute
    // difference of its log-probability.
    let prompt = "The capital of France is";
    let (a, b) = (top_logprobs(server, "original", prompt), top_logprobs(server, "imported", prompt));
    let diff = |x: &[(String, f64)], y: &[(String, f64)]| {
        x.iter()
            .filter_map(|(token, lp)| y.iter().find(|(t, _)| t == token).map(|(_, other)| (lp - other).abs()))
            .fold(0.0f64, f64::max)
    };
    let first = diff(&a[0], &b[0]);
    let agreeing = a.iter().zip(&b).take_while(|(x, y)| x[0].0 == y[0].0).count();
    let worst = a.iter().zip(&b).take(agreeing).map(|(x, y)| diff(x, y)).fold(0.0, f64::max);
    eprintln!(
        "{}: log-probability differences: first step {first:.4}, {agreeing} agreeing steps {worst:.4}",
        expect.goldens
    );
    assert!(agreeing >= 4, "{a:?} vs {b:?}");
    assert!(first < expect.first_bound && worst < expect.bound, "{a:?} vs {b:?}");
    dir
}

/// The greedy answer of `model` to the Paris question.
fn ask(server: &Server, model: &str) -> String {
    let body = json!({"model": model, "stream": false, "options": {"temperature": 0, "num_predict": 24},
        "messages": [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]});
    let (status, v) = post(server, "/api/chat", body);
    assert_eq!(status, 200, "{v}");
    v["message"]["content"].as_str().unwrap().to_string()
}

/// The greedy continuation of "Once upon a time" by `model`, in raw mode.
fn story(server: &Server, model: &str) -> String {
    let body = json!({"model": model, "prompt": "Once upon a time", "raw": true, "stream": false,
        "options": {"temperature": 0, "num_predict": 8}});
    let (status, v) = post(server, "/api/generate", body);
    assert_eq!(status, 200, "{v}");
    v["response"].as_str().unwrap().to_string()
}

#[test]
fn issue_14_an_exported_smollm2_imports_back_and_answers_as_the_original() {
    let _disk = one_at_a_time();
    let server = Server::start();
    // Measured: at most 0.09 at the first step and 0.26 over the five agreeing steps
    // (low-probability alternatives in flat distributions). The weights are the same up to F16
    // rounding; what differs is the arithmetic: the original's Q4_1 kernels quantize the
    // activations to 8 bits, the import's F16 kernels do not.
    let expect = Expect {
        goldens: "smollm2-135m",
        family: "llama",
        template_marker: Some("<|im_start|>"),
        first_bound: 0.15,
        bound: 0.4,
    };
    let dir = export_and_compare(&server, &corral_testkit::smollm2(), 2, expect);

    // Quantized on import, with llama.cpp's quantizer after the F16 conversion.
    let out = create(&server, "imported-q4", dir.path(), &["--quantize", "q4_K_M"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, shown) = post(&server, "/api/show", json!({"model": "imported-q4"}));
    assert_eq!(shown["details"]["quantization_level"], "Q4_K_M", "{shown}");
    assert!(ask(&server, "imported-q4").contains("Paris"));

    // An architecture Corral does not convert is a 400 that names it.
    let mut config: Value = serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    config["architectures"] = json!(["FalconForCausalLM"]);
    std::fs::write(dir.path().join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let out = create(&server, "falcon", dir.path(), &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unsupported architecture (FalconForCausalLM)"), "{}", stderr(&out));
}

#[test]
fn issue_14_an_exported_qwen2_imports_back_and_answers_as_the_original() {
    let _disk = one_at_a_time();
    let server = Server::start();
    // Measured: 0.07 at the first step, 0.11 over the agreeing steps.
    let expect = Expect {
        goldens: "qwen2.5-coder-0.5b",
        family: "qwen2",
        template_marker: Some("<tool_call>"),
        first_bound: 0.15,
        bound: 0.3,
    };
    export_and_compare(&server, &corral_testkit::qwen_coder(), 3, expect);
}

#[test]
fn issue_14_an_exported_gemma3_imports_back_and_answers_as_the_original() {
    let _disk = one_at_a_time();
    let server = Server::start();
    // Measured: 0.23 at the first step and over all eight steps (the original is Q4_K_M with Q8_0
    // embeddings, the import F16).
    let expect =
        Expect { goldens: "gemma3-270m", family: "gemma3", template_marker: None, first_bound: 0.35, bound: 0.4 };
    let dir = export_and_compare(&server, &corral_testkit::gemma3(), 2, expect);
    assert!(dir.path().join("tokenizer.model").exists(), "the SentencePiece path was taken");
    assert!(!dir.path().join("tokenizer.json").exists());
}

/// Imports `dir` as `name` and has it decode eight tokens in raw mode: llama.cpp accepts the
/// metadata and tensors the converter wrote for the architecture.
fn import_and_decode(server: &Server, name: &str, dir: &Path, family: &str) {
    let out = create(server, name, dir, &[]);
    assert!(out.status.success(), "{name}: {}", stderr(&out));
    let (_, shown) = post(server, "/api/show", json!({"model": name}));
    assert_eq!(shown["details"]["family"], family, "{shown}");
    let body = json!({"model": name, "prompt": "Once upon a time", "raw": true, "stream": false,
        "options": {"temperature": 0, "num_predict": 8}});
    let (status, v) = post(server, "/api/generate", body);
    assert_eq!(status, 200, "{name}: {v}");
    assert_eq!(v["eval_count"], 8, "{name}: {v}");
}

/// No qwen3 or gemma2 model is fetched here, so these two are SmolLM2's exported weights dressed
/// as one (the tensors those architectures add, `config.json` naming them): the answers are not
/// meaningful, but the model must load and decode, which checks the tensor names, shapes and
/// hyper-parameters the converter writes for them.
#[test]
fn issue_14_qwen3_and_gemma2_directories_convert_to_models_llama_cpp_loads() {
    let _disk = one_at_a_time();
    let server = Server::start();
    let base = tempfile::tempdir().unwrap();
    corral_testkit::export_hf(&corral_testkit::smollm2(), base.path(), 1);
    let config: Value = serde_json::from_slice(&std::fs::read(base.path().join("config.json")).unwrap()).unwrap();
    let layers = config["num_hidden_layers"].as_u64().unwrap();
    let embd = config["hidden_size"].as_u64().unwrap();
    let head_dim = embd / config["num_attention_heads"].as_u64().unwrap();
    let dress = |arch: &str, extra: Value, tensors: &[(&str, u64, f32)]| {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(base.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        let mut config = config.clone();
        config["architectures"] = json!([arch]);
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        std::fs::write(dir.path().join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
        let added: Vec<(String, Vec<u64>, Vec<f32>)> = (0..layers)
            .flat_map(|l| {
                tensors.iter().map(move |(part, len, value)| {
                    (format!("model.layers.{l}.{part}.weight"), vec![*len], vec![*value; *len as usize])
                })
            })
            .collect();
        corral_testkit::write_safetensors(&dir.path().join("model-extra.safetensors"), &added);
        dir
    };

    let qwen3 = dress(
        "Qwen3ForCausalLM",
        json!({"model_type": "qwen3", "head_dim": head_dim}),
        &[("self_attn.q_norm", head_dim, 1.0), ("self_attn.k_norm", head_dim, 1.0)],
    );
    import_and_decode(&server, "dressed-qwen3", qwen3.path(), "qwen3");

    // Gemma's norms are stored as `w - 1`: zeros are a scale of one.
    let gemma2 = dress(
        "Gemma2ForCausalLM",
        json!({"model_type": "gemma2", "head_dim": head_dim, "sliding_window": 4096,
            "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "query_pre_attn_scalar": head_dim}),
        &[("pre_feedforward_layernorm", embd, 0.0), ("post_feedforward_layernorm", embd, 0.0)],
    );
    import_and_decode(&server, "dressed-gemma2", gemma2.path(), "gemma2");
}
