//! Embeddings end to end: all-MiniLM-L6-v2 imported from its safetensors directory with
//! `corral create` (F16, and `--quantize q8_0`), then `/api/embed`, `/api/embeddings` and
//! `/v1/embeddings` checked against sentence-transformers' own vectors.

mod common;

use common::{create_from, post, runnable_bytes, stderr, Server};
use corral_testkit::cosine;
use serde_json::{json, Value};

fn create(server: &Server, name: &str, quantize: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let modelfile = dir.path().join("Modelfile");
    std::fs::write(&modelfile, format!("FROM {}\n", corral_testkit::minilm_dir().display())).unwrap();
    let mut args = vec!["create", name, "-f", modelfile.to_str().unwrap()];
    if let Some(q) = quantize {
        args.extend(["--quantize", q]);
    }
    let out = server.corral(&args);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn vectors(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect()
}

#[test]
fn minilm_from_safetensors_matches_the_reference() {
    let server = Server::start();
    create(&server, "all-minilm", None);
    create(&server, "all-minilm:q8", Some("q8_0"));
    let (texts, goldens) = corral_testkit::minilm_goldens();
    for (model, floor) in [("all-minilm", 0.999), ("all-minilm:q8", 0.995)] {
        let (status, v) = post(&server, "/api/embed", json!({"model": model, "input": texts}));
        assert_eq!(status, 200, "{v}");
        let got = vectors(&v["embeddings"]);
        assert_eq!(got.len(), 3);
        for (i, (g, want)) in got.iter().zip(&goldens).enumerate() {
            assert_eq!(g.len(), 384);
            let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
            let cos = cosine(g, want);
            assert!(cos >= floor, "{model} text {i}: cosine {cos} < {floor}");
        }
        assert!(v["prompt_eval_count"].as_u64().unwrap() > 20, "{v}");
        assert!(v["total_duration"].as_u64().unwrap() >= v["load_duration"].as_u64().unwrap());
    }
    let shown = server.ok(&["show", "all-minilm:q8"]);
    assert!(shown.contains("bert") && shown.contains("Q8_0") && shown.contains("embedding"), "{shown}");

    // `dimensions` keeps the first values, renormalised.
    let (_, v) = post(&server, "/api/embed", json!({"model": "all-minilm", "input": texts[0], "dimensions": 64}));
    let short = &vectors(&v["embeddings"])[0];
    assert_eq!(short.len(), 64);
    assert!(cosine(short, &goldens[0][..64]) > 0.999);

    // The legacy endpoint returns the raw vector: same direction, not unit length.
    let (status, v) = post(&server, "/api/embeddings", json!({"model": "all-minilm", "prompt": texts[0]}));
    assert_eq!(status, 200, "{v}");
    let raw: Vec<f32> = v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert!(cosine(&raw, &goldens[0]) > 0.999);
    assert!((raw.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() > 0.01);

    // OpenAI's, in floats and in base64 of little-endian f32.
    let (status, v) = post(&server, "/v1/embeddings", json!({"model": "all-minilm", "input": [texts[1]]}));
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["object"].as_str(), v["data"][0]["index"].as_u64()), (Some("list"), Some(0)));
    let floats: Vec<f32> =
        v["data"][0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert!(cosine(&floats, &goldens[1]) > 0.999);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 5);
    let (_, v) =
        post(&server, "/v1/embeddings", json!({"model": "all-minilm", "input": texts[1], "encoding_format": "base64"}));
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(v["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let decoded: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(decoded, floats);
}

#[test]
fn embedding_errors() {
    let server = Server::start();
    create(&server, "all-minilm", None);
    assert_eq!(create_from(&server, "tiny", &runnable_bytes(42, 2048), json!({})).0, 200);
    let long = "word ".repeat(2000);
    let cases = [
        (json!({"model": "all-minilm", "input": long, "truncate": false}), 400, "exceeds the context length"),
        (json!({"model": "all-minilm", "input": [1, 2]}), 400, "invalid input type"),
        (json!({"model": "tiny", "input": "x"}), 400, "does not support embeddings"),
        (json!({"model": "nothing", "input": "x"}), 404, "not found"),
        (json!({"model": "all-minilm", "input": "x", "dimensions": -1}), 400, "invalid dimensions"),
    ];
    for (body, status, message) in cases {
        let (got, v) = post(&server, "/api/embed", body.clone());
        assert_eq!(got.as_u16(), status, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(message), "{message}: {v}");
    }
    // Too long but truncated (the default): still one vector.
    let (status, v) = post(&server, "/api/embed", json!({"model": "all-minilm", "input": long}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["prompt_eval_count"], 512);
    // Empty input loads the model and returns nothing.
    let (status, v) = post(&server, "/api/embed", json!({"model": "all-minilm", "input": []}));
    assert_eq!((status.as_u16(), v["embeddings"].clone()), (200, json!([])));
    let (status, v) =
        post(&server, "/api/chat", json!({"model": "all-minilm", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("does not support chat"), "{v}");
    let (status, v) =
        post(&server, "/v1/embeddings", json!({"model": "all-minilm", "input": "x", "encoding_format": "hex"}));
    assert_eq!(status, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let (status, v) = post(&server, "/v1/embeddings", json!({"model": "all-minilm", "input": []}));
    assert_eq!((status.as_u16(), v["error"]["message"].as_str()), (400, Some("invalid input")));

    // A bad quantization type names itself, from the CLI as from the API.
    let dir = tempfile::tempdir().unwrap();
    let modelfile = dir.path().join("Modelfile");
    std::fs::write(&modelfile, format!("FROM {}\n", corral_testkit::minilm_dir().display())).unwrap();
    let out = server.corral(&["create", "x", "-f", modelfile.to_str().unwrap(), "--quantize", "q9_x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unsupported quantization type q9_x"), "{}", stderr(&out));
    let (status, v) =
        post(&server, "/api/create", json!({"model": "y", "from": "tiny", "quantize": "q3_weird", "stream": false}));
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("unsupported quantization type q3_weird"), "{v}");
}
