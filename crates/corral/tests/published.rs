//! Issue 28: a models directory as `ollama pull` leaves it, holding Gemma 3 in the layout Ollama
//! published it in (vision tower in the file, its own key names), is served with no re-pull:
//! `corral run` answers, the answer is the one the llama.cpp layout gives, `show` reports the
//! file's own metadata, `ps` counts what was loaded, and the blob is untouched. With
//! `OLLAMA_LLAMA_CPP_COMPAT=0` it does not load, and the error says why. Issue 29: the file is
//! also its own projector, so it takes images; so does a published Qwen2.5-VL (multi-axis RoPE)
//! made with `create`, and a published Gemma 4 hears through its audio tower.

mod common;

use std::path::Path;

use base64::Engine as _;
use common::{post, stdout, Server};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// Writes `bytes` as a blob and returns its `sha256:<hex>` digest.
fn blob(models: &Path, bytes: &[u8]) -> String {
    let hex = format!("{:x}", Sha256::digest(bytes));
    std::fs::create_dir_all(models.join("blobs")).unwrap();
    std::fs::write(models.join("blobs").join(format!("sha256-{hex}")), bytes).unwrap();
    format!("sha256:{hex}")
}

/// A store with `registry.ollama.ai/library/gemma3:270m` (the published layout, a chat template
/// layer as Ollama's library has), and `gemma3-ref:latest`, the same weights in llama.cpp's
/// layout. Returns the published blob's digest.
fn ollama_store(models: &Path) -> String {
    let published = corral_testkit::gemma3_as_published(&corral_testkit::gemma3());
    let weights = blob(models, &published);
    let template =
        "{{ range .Messages }}<start_of_turn>{{ if eq .Role \"assistant\" }}model{{ else }}{{ .Role }}{{ end }}\n\
                    {{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n";
    let template_digest = blob(models, template.as_bytes());
    let config = json!({
        "model_format": "gguf", "model_family": "gemma3", "model_families": ["gemma3"],
        "model_type": "268.10M", "file_type": "Q4_K_M", "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [weights, template_digest]}
    })
    .to_string();
    let config_digest = blob(models, config.as_bytes());
    let manifest = |model: &str, size: usize| {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [
                {"mediaType": "application/vnd.ollama.image.model", "digest": model, "size": size},
                {"mediaType": "application/vnd.ollama.image.template", "digest": template_digest, "size": template.len()}
            ]
        })
        .to_string()
    };
    let dir = models.join("manifests/registry.ollama.ai/library/gemma3");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("270m"), manifest(&weights, published.len())).unwrap();
    let reference = std::fs::read(corral_testkit::gemma3()).unwrap();
    let reference_digest = blob(models, &reference);
    let dir = models.join("manifests/registry.ollama.ai/library/gemma3-ref");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("latest"), manifest(&reference_digest, reference.len())).unwrap();
    weights
}

fn generate(server: &Server, model: &str) -> Value {
    let body = json!({"model": model, "prompt": "Once upon a time", "raw": true, "stream": false,
                      "options": {"temperature": 0, "num_predict": 12, "num_ctx": 2048}});
    let (status, v) = post(server, "/api/generate", body);
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn issue_28_an_ollama_store_with_a_published_gemma3_is_served_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let digest = ollama_store(&models);
    let blob_path = models.join("blobs").join(digest.replace(':', "-"));
    let before = std::fs::read(&blob_path).unwrap();
    let server = Server::start_in(&models, &[("CORRAL_NUM_THREAD", "1")]);

    let published = generate(&server, "gemma3:270m");
    let reference = generate(&server, "gemma3-ref");
    assert_eq!(published["response"], reference["response"]);
    assert!(published["response"].as_str().unwrap().starts_with(", there was a "), "{published}");

    // `ps` counts the text model as the reference loads it, plus the vision tower and projector,
    // which the runner loads as the file's projector (issue 29).
    let ps: Value = common::http().get(server.url("/api/ps")).send().unwrap().json().unwrap();
    let size = |name: &str| {
        let entry = ps["models"].as_array().unwrap().iter().find(|m| m["name"] == name);
        entry.unwrap_or_else(|| panic!("{name} is not loaded: {ps}"))["size"].as_u64().unwrap()
    };
    let header = corral_gguf::read_bytes(&before).unwrap();
    let unread = corral_compat::translate(&header).unwrap().unwrap().unread_bytes(&header);
    let tower: u64 =
        header.tensors.iter().filter(|t| t.name.starts_with("v.") || t.name.starts_with("mm.")).map(|t| t.size).sum();
    assert!(
        unread > 10_000 && unread == tower,
        "the fixture's vision tensors: {unread} bytes, {tower} in v.* and mm.*"
    );
    assert_eq!(size("gemma3:270m"), size("gemma3-ref:latest") + tower, "{ps}");

    // `show` reports the file's own metadata, as Ollama does, and vision: the file is its own
    // projector.
    let (_, shown) = post(&server, "/api/show", json!({"model": "gemma3:270m"}));
    assert_eq!(shown["model_info"]["general.architecture"], "gemma3", "{shown}");
    assert_eq!(shown["model_info"]["gemma3.mm.tokens_per_image"], 4, "{shown}");
    let caps: Vec<&str> = shown["capabilities"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(caps, ["completion", "vision"], "{shown}");

    // A picture reaches it through the chat (two pictures, two answers).
    let describe = |seed| {
        let image = base64::engine::general_purpose::STANDARD.encode(corral_testkit::projector::png(96, 80, seed));
        let body = json!({"model": "gemma3:270m", "stream": false,
                          "messages": [{"role": "user", "content": "Describe the picture.", "images": [image]}],
                          "options": {"temperature": 0, "num_predict": 12}});
        let (status, v) = post(&server, "/api/chat", body);
        assert_eq!(status, 200, "{v}");
        v["message"]["content"].as_str().unwrap().to_string()
    };
    assert_ne!(describe(1), describe(2));

    // `corral run` through the chat template answers.
    let out = server.corral(&["run", "gemma3:270m", "Say hello."]);
    assert!(out.status.success(), "{out:?}");
    assert!(!stdout(&out).trim().is_empty(), "{out:?}");

    // Nothing was re-pulled or rewritten.
    assert_eq!(std::fs::read(&blob_path).unwrap(), before);
    let blobs = std::fs::read_dir(models.join("blobs")).unwrap().count();
    assert_eq!(blobs, 4, "the store holds the same four blobs");
    server.stop();

    // With the translation turned off, as in Ollama, the file is handed to llama.cpp as it is:
    // a 500 that names the architecture and gives llama.cpp's own reason.
    let server = Server::start_in(&models, &[("CORRAL_NUM_THREAD", "1"), ("OLLAMA_LLAMA_CPP_COMPAT", "0")]);
    let body =
        json!({"model": "gemma3:270m", "prompt": "Hi", "raw": true, "stream": false, "options": {"num_predict": 1}});
    let (status, v) = post(&server, "/api/generate", body);
    assert_eq!(status, 500, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("architecture gemma3") && error.contains("llama.cpp:"), "{error}");
    assert!(error.contains("layer_norm_rms_epsilon") || error.contains("tensor"), "{error}");
}

fn smollm2_tokenizer() -> corral_gguf::Gguf {
    corral_gguf::read_path(&corral_testkit::smollm2()).unwrap()
}

/// A server over a models directory under `tmp` where `corral create NAME` made a model of the
/// published file `bytes` (`FROM` the file), and the model's capabilities.
fn created(tmp: &Path, name: &str, bytes: &[u8]) -> (Server, Vec<String>) {
    let file = tmp.join(format!("{name}.gguf"));
    std::fs::write(&file, bytes).unwrap();
    let modelfile = tmp.join("Modelfile");
    std::fs::write(&modelfile, format!("FROM {}\n", file.display())).unwrap();
    let server = Server::start_in(&tmp.join("models"), &[("CORRAL_NUM_THREAD", "1")]);
    let out = server.corral(&["create", name, "-f", modelfile.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let (_, shown) = post(&server, "/api/show", json!({"model": name}));
    let caps = shown["capabilities"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    (server, caps)
}

#[test]
fn issue_29_a_published_qwen25vl_takes_pictures_through_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let published = corral_testkit::tiny_qwen25vl(corral_testkit::Layout::Published, &smollm2_tokenizer(), 11);
    let (server, caps) = created(tmp.path(), "qwen25vl", &published);
    assert!(caps.contains(&"vision".to_string()), "{caps:?}");

    // 224×112 pixels: 32 image tokens on two attention windows, 16 positions.
    let describe = |seed| {
        let image = base64::engine::general_purpose::STANDARD.encode(corral_testkit::projector::png(224, 112, seed));
        let body = json!({"model": "qwen25vl", "stream": false, "raw": true,
                          "prompt": "<|im_start|>user\n", "images": [image],
                          "options": {"temperature": 0, "num_predict": 8}});
        let (status, v) = post(&server, "/api/generate", body);
        assert_eq!(status, 200, "{v}");
        (v["response"].as_str().unwrap().to_string(), v["prompt_eval_count"].as_u64().unwrap())
    };
    let ((one, n1), (two, n2)) = (describe(1), describe(2));
    assert_ne!(one, two, "two pictures, one answer");
    assert!(n1 >= 32 && n1 == n2, "prompt_eval_count {n1} / {n2}: the picture's 32 tokens are counted");

    // `ps` counts the tower as the projector's weights.
    let ps: Value = common::http().get(server.url("/api/ps")).send().unwrap().json().unwrap();
    let size = ps["models"][0]["size"].as_u64().unwrap();
    let header = corral_gguf::read_bytes(&published).unwrap();
    let tower: u64 =
        header.tensors.iter().filter(|t| t.name.starts_with("v.") || t.name.starts_with("mm.")).map(|t| t.size).sum();
    assert!(tower > 0 && size > tower, "{ps}");
    server.stop();
}

#[test]
fn issue_29_a_published_gemma4_hears_through_the_server() {
    // Its audio tower, translated as a second projector of the same file, makes it an audio model.
    let tmp = tempfile::tempdir().unwrap();
    let published = corral_testkit::tiny_gemma4(corral_testkit::Layout::Published, &smollm2_tokenizer(), 11);
    let (server, caps) = created(tmp.path(), "gemma4", &published);
    assert!(caps.contains(&"vision".to_string()) && caps.contains(&"audio".to_string()), "{caps:?}");

    let hear = |seed| {
        let sound = base64::engine::general_purpose::STANDARD.encode(corral_testkit::audio::wav(1.0, 16_000, seed));
        let body = json!({"model": "gemma4", "temperature": 0, "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What do you hear?"},
            {"type": "input_audio", "input_audio": {"data": sound, "format": "wav"}}
        ]}]});
        let (status, v) = post(&server, "/v1/chat/completions", body);
        assert_eq!(status, 200, "{v}");
        (
            v["choices"][0]["message"]["content"].as_str().unwrap().to_string(),
            v["usage"]["prompt_tokens"].as_u64().unwrap(),
        )
    };
    let ((one, n1), (two, n2)) = (hear(1), hear(2));
    assert_ne!(one, two, "two sounds, one answer");
    // A second of sound is a dozen or so audio tokens on top of the question's.
    assert!(n1 == n2 && n1 > 10, "prompt_tokens {n1} / {n2}");
    server.stop();
}
