//! Issue 14: `create --quantize` with llama.cpp's quantizer, from an unquantized GGUF (a tiny
//! model with SmolLM2's tokenizer and F32 weights, 256 wide so the K-quants apply), through the
//! API and the CLI: Ollama's progress lines, the new file type, a smaller blob that runs, and
//! nothing half-written left in the models directory.

mod common;

use common::{create_from, http, lines, post, Server};
use corral_testkit::TinySpec;
use serde_json::{json, Value};

fn f32_model() -> Vec<u8> {
    let spec = TinySpec { embd: 256, ffn: 512, layers: 1, f32: true, ..Default::default() };
    corral_testkit::tiny_llama_with_smollm2_tokenizer(&spec)
}

fn level(server: &Server, model: &str) -> Value {
    let (status, v) = post(server, "/api/show", json!({"model": model}));
    assert_eq!(status, 200, "{v}");
    v["details"]["quantization_level"].clone()
}

fn weights_size(server: &Server, model: &str) -> u64 {
    let tags: Value = http().get(server.url("/api/tags")).send().unwrap().json().unwrap();
    let m = tags["models"].as_array().unwrap().iter().find(|m| m["name"] == format!("{model}:latest")).unwrap().clone();
    m["size"].as_u64().unwrap()
}

#[test]
fn issue_14_create_quantizes_an_unquantized_gguf() {
    let server = Server::start();
    let (status, v) = create_from(&server, "src", &f32_model(), json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(level(&server, "src"), "F32");

    // From an existing model, streamed: Ollama's status line with tensor counters, then the
    // usual layers and success.
    let resp = http()
        .post(server.url("/api/create"))
        .json(&json!({"model": "q4", "from": "src", "quantize": "q4_K_M", "system": "Be brief."}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let progress = lines(resp);
    let counted: Vec<&Value> =
        progress.iter().filter(|p| p["status"] == "quantizing F32 model to Q4_K_M" && p["total"].is_u64()).collect();
    assert!(!counted.is_empty(), "{progress:?}");
    let last = counted.last().unwrap();
    assert_eq!(last["completed"], last["total"], "{last}");
    assert_eq!(last["digest"], "0000000000000000000");
    assert_eq!(progress.last().unwrap()["status"], "success", "{progress:?}");
    assert_eq!(level(&server, "q4"), "Q4_K_M");
    let (src, q4) = (weights_size(&server, "src"), weights_size(&server, "q4"));
    assert!(q4 * 4 < src, "Q4_K_M is {q4} bytes, F32 {src}");

    // It runs, and keeps what the request layered on top (the system message).
    let (status, v) = post(
        &server,
        "/api/generate",
        json!({"model": "q4", "prompt": "Hi", "stream": false, "options": {"num_predict": 4, "temperature": 0}}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["eval_count"], 4, "{v}");
    let (_, shown) = post(&server, "/api/show", json!({"model": "q4"}));
    assert_eq!(shown["system"], "Be brief.");

    // From uploaded files, not streamed.
    let digest = common::upload(&server, &f32_model());
    let (status, v) = post(
        &server,
        "/api/create",
        json!({"model": "q8", "files": {"model.gguf": digest.to_string()}, "quantize": "Q8_0", "stream": false}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(level(&server, "q8"), "Q8_0");

    // Through the CLI.
    let dir = tempfile::tempdir().unwrap();
    let modelfile = dir.path().join("Modelfile");
    std::fs::write(&modelfile, "FROM src\n").unwrap();
    let out = server.corral(&["create", "q6", "--quantize", "q6_K", "-f", modelfile.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("quantizing F32 model to Q6_K"), "{}", common::stderr(&out));
    assert_eq!(level(&server, "q6"), "Q6_K");

    // A quantized source is refused before anything is written.
    let (status, v) = post(&server, "/api/create", json!({"model": "again", "from": "q4", "quantize": "q8_0"}));
    assert_eq!(
        (status.as_u16(), v["error"].as_str()),
        (400, Some("quantization is only supported for F16, BF16 and F32 models"))
    );

    // Nothing half-written is left among the blobs.
    let leftovers: Vec<String> = common::tree(&server.models).into_iter().filter(|p| p.contains(".tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Issue 28: quantizing a model in the layout Ollama published it in (gpt-oss as `gptoss`, F32)
/// writes llama.cpp's layout: the new model is `gpt-oss`, with llama.cpp's tensor names, and runs.
#[test]
fn issue_28_quantizing_a_published_layout_writes_llama_cpps() {
    let server = Server::start();
    let tokenizer = corral_gguf::read_path(&corral_testkit::smollm2()).unwrap();
    let published = corral_testkit::tiny_gpt_oss(corral_testkit::Layout::Published, &tokenizer, 5);
    let (status, v) = create_from(&server, "oss-src", &corral_testkit::dequantized(&published), json!({}));
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(
        &server,
        "/api/create",
        json!({"model": "oss-q8", "from": "oss-src", "quantize": "q8_0", "stream": false}),
    );
    assert_eq!(status, 200, "{v}");

    let show = |model: &str| post(&server, "/api/show", json!({"model": model, "verbose": true})).1;
    let (src, q8) = (show("oss-src"), show("oss-q8"));
    // The source is reported as its file has it (as Ollama does); the new model is llama.cpp's.
    assert_eq!(src["model_info"]["general.architecture"], "gptoss", "{src}");
    assert_eq!(q8["model_info"]["general.architecture"], "gpt-oss", "{q8}");
    assert_eq!(q8["details"]["quantization_level"], "Q8_0", "{q8}");
    assert!(q8["model_info"].as_object().unwrap().keys().all(|k| !k.starts_with("gptoss.")), "{q8}");
    assert!(q8["model_info"]["gpt-oss.expert_feed_forward_length"].is_u64(), "{q8}");
    let names: Vec<&str> = q8["tensors"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"blk.0.attn_output.weight") && names.contains(&"blk.0.attn_sinks.weight"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("attn_out.") || n.ends_with("attn_sinks")), "{names:?}");

    let (status, v) = post(
        &server,
        "/api/generate",
        json!({"model": "oss-q8", "prompt": "Hi", "raw": true, "stream": false, "options": {"num_predict": 4, "temperature": 0}}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["eval_count"], 4, "{v}");
}

/// Issue 28: quantizing GLM-OCR as Ollama published it: llama.cpp's quantizer reads the fused
/// `ffn_up` through the translation in pieces and writes it whole; the result answers as the same
/// weights quantized from llama.cpp's layout do.
#[test]
fn issue_28_quantizing_a_published_glmocr_writes_the_fused_feed_forward() {
    let server = Server::start();
    let tokenizer = corral_gguf::read_path(&corral_testkit::smollm2()).unwrap();
    for (name, layout) in [("ocr", corral_testkit::Layout::Published), ("glm", corral_testkit::Layout::LlamaCpp)] {
        let bytes = corral_testkit::dequantized(&corral_testkit::tiny_glmocr(layout, &tokenizer, 5));
        let (status, v) = create_from(&server, &format!("{name}-src"), &bytes, json!({}));
        assert_eq!(status, 200, "{v}");
        let (status, v) = post(
            &server,
            "/api/create",
            json!({"model": format!("{name}-q8"), "from": format!("{name}-src"), "quantize": "q8_0", "stream": false}),
        );
        assert_eq!(status, 200, "{v}");
    }
    let (_, q8) = post(&server, "/api/show", json!({"model": "ocr-q8", "verbose": true}));
    assert_eq!(q8["model_info"]["general.architecture"], "glm4", "{q8}");
    let tensors = q8["tensors"].as_array().unwrap();
    let up = tensors.iter().find(|t| t["name"] == "blk.0.ffn_up.weight").expect("ffn_up");
    assert_eq!(up["shape"], json!([64, 192]), "{up}");
    let name = |t: &Value| t["name"].as_str().unwrap().to_string();
    assert!(!tensors.iter().any(|t| name(t).contains("ffn_gate") || name(t).starts_with("v.")), "{tensors:?}");

    let answer = |model: &str| {
        let body = json!({"model": model, "prompt": "Once upon a time", "raw": true, "stream": false,
                          "logprobs": true, "top_logprobs": 3, "options": {"num_predict": 6, "temperature": 0}});
        let (status, v) = post(&server, "/api/generate", body);
        assert_eq!(status, 200, "{v}");
        (v["response"].clone(), v["logprobs"].clone())
    };
    let (published, reference) = (answer("ocr-q8"), answer("glm-q8"));
    assert!(published.1.as_array().is_some_and(|l| l.len() == 6), "{published:?}");
    assert_eq!(published, reference);
}
