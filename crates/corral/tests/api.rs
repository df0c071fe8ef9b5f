//! The native API over raw HTTP: fields, status codes, error JSON, streaming, and hostile input.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use common::{body, create, error, http, post, tiny_bytes, tree, upload, Server};
use corral_types::Digest;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Sends a raw request so the Host and Origin headers are exactly what a browser would send.
fn raw(server: &Server, request: &str) -> String {
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn health_version_and_routing() {
    let server = Server::start();
    let resp = http().get(server.url("/")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(resp.text().unwrap(), "Ollama is running");
    assert_eq!(http().head(server.url("/")).send().unwrap().status(), 200);
    // Issue 27: the body is the Ollama release whose API Corral implements (clients such as Codex
    // refuse an "Ollama 0.1.0"); Corral's own version is in a header.
    let resp = http().get(server.url("/api/version")).send().unwrap();
    assert_eq!(resp.headers()["x-corral-version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body(resp), (StatusCode::OK, json!({"version": corral_server::OLLAMA_API_VERSION})));
    assert_eq!(body(http().get(server.url("/api/tags")).send().unwrap()), (StatusCode::OK, json!({"models": []})));
    assert_eq!(http().head(server.url("/api/tags")).send().unwrap().status(), 200);
    let resp = http().get(server.url("/api/nope")).send().unwrap();
    assert_eq!((resp.status(), resp.text().unwrap()), (StatusCode::NOT_FOUND, "404 page not found".into()));
    assert_eq!(http().get(server.url("/api/create")).send().unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(http().post(server.url("/api/delete")).send().unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn blobs_are_verified() {
    let server = Server::start();
    let before = tree(&server.models);
    // Percent-encoded slashes reach the handler as one path segment; literal ones never match the route.
    for bad in
        ["sha256:..%2F..%2Fetc%2Fpasswd", "sha512:00", "sha256-abc", "..%2F..%2Fetc%2Fpasswd", "sha256:", "sha256%00"]
    {
        let resp = http().post(server.url(&format!("/api/blobs/{bad}"))).body("x").send().unwrap();
        assert_eq!(body(resp), error(StatusCode::BAD_REQUEST, "invalid digest format"), "{bad}");
        assert_eq!(http().head(server.url(&format!("/api/blobs/{bad}"))).send().unwrap().status(), 400);
    }
    let claimed = Digest::of(b"what the client claims");
    let resp = http().post(server.url(&format!("/api/blobs/{claimed}"))).body("what was sent").send().unwrap();
    assert_eq!(
        body(resp),
        error(
            StatusCode::BAD_REQUEST,
            &format!("digest mismatch, expected \"{claimed}\", got \"{}\"", Digest::of(b"what was sent"))
        )
    );
    let literal = raw(&server, "POST /api/blobs/sha256:../../../tmp/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx");
    assert!(literal.starts_with("HTTP/1.1 404"), "{literal}");
    assert_eq!(tree(&server.models), before, "nothing stored, no temp file left");
    assert_eq!(http().head(server.url(&format!("/api/blobs/{claimed}"))).send().unwrap().status(), 404);

    let d = Digest::of(b"payload");
    let url = server.url(&format!("/api/blobs/{d}"));
    assert_eq!(http().post(&url).body("payload").send().unwrap().status(), StatusCode::CREATED);
    assert_eq!(http().post(&url).body("payload").send().unwrap().status(), StatusCode::OK);
    assert_eq!(http().head(&url).send().unwrap().status(), StatusCode::OK);
    let dash = server.url(&format!("/api/blobs/sha256-{}", d.hex()));
    assert_eq!(http().head(&dash).send().unwrap().status(), StatusCode::OK);
    assert_eq!(fs::read(server.models.join("blobs").join(d.file_name())).unwrap(), b"payload");
}

#[test]
fn create_streams_progress_and_writes_ollamas_layout() {
    let server = Server::start();
    let gguf = tiny_bytes();
    let d = upload(&server, &gguf);
    let req = json!({
        "model": "team/tiny:v1",
        "files": {"model.gguf": d.to_string()},
        "system": "Be brief.",
        "template": "{{ .Prompt }}",
        "parameters": {"temperature": 0.5, "stop": ["END"], "num_ctx": 512.0},
        "messages": [{"role": "user", "content": "hi"}],
        "license": ["A", "B"],
    });
    let resp = http().post(server.url("/api/create")).json(&req).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = resp.text().unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let statuses: Vec<&str> = lines.iter().map(|l| l["status"].as_str().unwrap()).collect();
    assert_eq!(statuses[0], "parsing GGUF");
    assert_eq!(statuses[1], format!("using existing layer {d}"));
    assert_eq!(statuses.iter().filter(|s| s.starts_with("creating new layer sha256:")).count(), 6);
    assert_eq!(&statuses[statuses.len() - 2..], ["writing manifest", "success"]);

    let manifest_path = server.models.join("manifests/registry.ollama.ai/team/tiny/v1");
    let manifest: Value = serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    let layers: Vec<(&str, u64)> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["mediaType"].as_str().unwrap(), l["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        layers,
        [
            ("application/vnd.ollama.image.model", gguf.len() as u64),
            ("application/vnd.ollama.image.template", 13),
            ("application/vnd.ollama.image.system", 9),
            ("application/vnd.ollama.image.license", 1),
            ("application/vnd.ollama.image.license", 1),
            ("application/vnd.ollama.image.params", 48),
            ("application/vnd.ollama.image.messages", 32),
        ]
    );
    let blob = |v: &Value| {
        fs::read(server.models.join("blobs").join(Digest::parse(v.as_str().unwrap()).unwrap().file_name())).unwrap()
    };
    let config: Value = serde_json::from_slice(&blob(&manifest["config"]["digest"])).unwrap();
    assert_eq!(
        config,
        json!({"model_format": "gguf", "model_family": "llama", "model_families": ["llama"], "model_type": "78K",
               "file_type": "Q8_0", "architecture": "amd64", "os": "linux"})
    );
    assert_eq!(blob(&manifest["layers"][5]["digest"]), br#"{"num_ctx":512,"stop":["END"],"temperature":0.5}"#);
    assert_eq!(blob(&manifest["layers"][6]["digest"]), br#"[{"role":"user","content":"hi"}]"#);

    // Not streaming: just the last status.
    assert_eq!(create(&server, "again", json!({})), (StatusCode::OK, json!({"status": "success"})));
    let tags = body(http().get(server.url("/api/tags")).send().unwrap()).1;
    let names: Vec<&str> = tags["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["again:latest", "team/tiny:v1"], "most recent first");
    let m = &tags["models"][1];
    assert_eq!(m["model"], "team/tiny:v1");
    assert_eq!(m["digest"].as_str().unwrap(), Digest::of(&fs::read(&manifest_path).unwrap()).hex());
    assert_eq!(
        m["size"].as_u64().unwrap(),
        manifest["config"]["size"].as_u64().unwrap() + layers.iter().map(|l| l.1).sum::<u64>()
    );
    assert_eq!(
        m["details"],
        json!({"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
               "parameter_size": "78K", "quantization_level": "Q8_0"})
    );
    assert!(m["modified_at"].as_str().unwrap().contains('T'));
}

#[test]
fn show_fields() {
    let server = Server::start();
    create(&server, "tiny", json!({"system": "S", "parameters": {"top_k": 7}, "license": "MIT"}));
    let (status, show) = post(&server, "/api/show", json!({"model": "TINY"}));
    assert_eq!(status, 200);
    assert_eq!(show["details"]["family"], "llama");
    assert_eq!(show["details"]["quantization_level"], "Q8_0");
    assert_eq!(show["system"], "S");
    assert_eq!(show["license"], "MIT");
    assert_eq!(show["parameters"], "top_k                          7");
    assert_eq!(show["capabilities"], json!(["completion"]));
    assert!(show["modelfile"].as_str().unwrap().starts_with("# Modelfile generated by \"corral show\"\n"));
    assert!(show["modified_at"].is_string());
    let info = show["model_info"].as_object().unwrap();
    assert_eq!(info["general.architecture"], "llama");
    assert_eq!(info["llama.embedding_length"], 64);
    assert_eq!(info["general.parameter_count"], 78144);
    assert_eq!(info["tokenizer.ggml.tokens"], json!([]), "long arrays are elided unless verbose");
    assert!(!info.contains_key("general.name"));
    assert!(show.get("tensors").is_none());

    let (_, verbose) = post(
        &server,
        "/api/show",
        json!({"name": "tiny", "verbose": true, "system": "override",
                                                          "options": {"temperature": 0.1}}),
    );
    assert_eq!(verbose["model_info"]["tokenizer.ggml.tokens"].as_array().unwrap().len(), 32);
    assert_eq!(verbose["tensors"][0], json!({"name": "token_embd.weight", "type": "Q8_0", "shape": [64, 32]}));
    assert_eq!(verbose["system"], "override");
    assert_eq!(verbose["parameters"], "temperature                    0.1\ntop_k                          7");

    create(&server, "tools", json!({"template": "{{ .Tools }}{{ .Suffix }}<think></think>"}));
    let (_, tools) = post(&server, "/api/show", json!({"model": "tools"}));
    assert_eq!(tools["capabilities"], json!(["completion", "tools", "insert", "thinking"]));

    // A model built on another records its parent.
    post(&server, "/api/create", json!({"model": "child", "from": "tiny", "stream": false}));
    let (_, child) = post(&server, "/api/show", json!({"model": "child"}));
    assert_eq!(child["details"]["parent_model"], "tiny:latest");
    assert_eq!(child["system"], "S");
}

#[test]
fn adapters_and_blob_references() {
    let server = Server::start();
    let gguf = tiny_bytes();
    let weights = upload(&server, &gguf);
    let lora = upload(&server, &corral_testkit::lora_adapter(64, 2, 8, 0.01, 1));
    let req = json!({"model": "tuned", "files": {"model.gguf": weights.to_string()},
                     "adapters": {"lora.gguf": lora.to_string()}, "stream": false});
    assert_eq!(post(&server, "/api/create", req), (StatusCode::OK, json!({"status": "success"})));
    let (_, show) = post(&server, "/api/show", json!({"model": "tuned"}));
    let adapter_line = format!("ADAPTER {}", server.models.join("blobs").join(lora.file_name()).display());
    assert!(show["modelfile"].as_str().unwrap().contains(&adapter_line), "{}", show["modelfile"]);

    // Only one adapter, and it must be an adapter.
    let two =
        json!({"model": "x", "from": "tuned", "adapters": {"a.gguf": lora.to_string(), "b.gguf": weights.to_string()}});
    assert_eq!(
        post(&server, "/api/create", two),
        error(StatusCode::BAD_REQUEST, "only one adapter is currently supported")
    );
    let not_lora = json!({"model": "x", "from": "tuned", "adapters": {"a.gguf": weights.to_string()}});
    assert_eq!(
        post(&server, "/api/create", not_lora),
        error(StatusCode::BAD_REQUEST, "a.gguf is not a GGUF LoRA adapter")
    );

    // `from` may name an uploaded blob directly, in any of its spellings.
    for from in [weights.to_string(), format!("@{weights}"), weights.file_name()] {
        let (status, v) = post(&server, "/api/create", json!({"model": "by-digest", "from": from, "stream": false}));
        assert_eq!(status, 200, "{from}: {v}");
        let (_, show) = post(&server, "/api/show", json!({"model": "by-digest"}));
        assert_eq!(show["details"]["family"], "llama");
    }
}

#[test]
fn copy_and_delete() {
    let server = Server::start();
    create(&server, "tiny", json!({}));
    let resp =
        http().post(server.url("/api/copy")).json(&json!({"source": "tiny", "destination": "copy"})).send().unwrap();
    assert_eq!((resp.status(), resp.text().unwrap()), (StatusCode::OK, String::new()));
    assert_eq!(
        post(&server, "/api/copy", json!({"source": "missing", "destination": "x"})),
        error(StatusCode::NOT_FOUND, "model \"missing\" not found")
    );
    let del = |m: &str| body(http().delete(server.url("/api/delete")).json(&json!({"model": m})).send().unwrap());
    assert_eq!(del("tiny"), (StatusCode::OK, Value::String(String::new())));
    assert_eq!(del("tiny"), error(StatusCode::NOT_FOUND, "model 'tiny' not found"));
    let (_, show) = post(&server, "/api/show", json!({"model": "copy"}));
    assert_eq!(show["details"]["format"], "gguf");
}

#[test]
fn hostile_requests_get_clear_errors_and_change_nothing() {
    let mut server = Server::start();
    create(&server, "keep", json!({"system": "precious"}));
    let truncated = {
        let mut b = tiny_bytes();
        b.truncate(b.len() / 3);
        b
    };
    // Uploaded up front: each is a valid blob, just not a valid model.
    let truncated = upload(&server, &truncated);
    let four_bytes = upload(&server, b"GGUF");
    let text = upload(&server, b"just text");
    let snapshot = tree(&server.models);

    for path in ["/api/show", "/api/create", "/api/copy"] {
        let resp = http()
            .post(server.url(path))
            .header("content-type", "application/json")
            .body("{\"model\": ")
            .send()
            .unwrap();
        let (status, v) = body(resp);
        assert_eq!(status, 400, "{path}");
        assert!(v["error"].as_str().unwrap().contains("EOF"), "{path}: {v}");
        let (status, v) = body(http().post(server.url(path)).send().unwrap());
        assert_eq!((status, v), error(StatusCode::BAD_REQUEST, "missing request body"), "{path}");
    }
    let (status, _) = body(http().delete(server.url("/api/delete")).body("[1,2").send().unwrap());
    assert_eq!(status, 400);

    let traversal = ["../x", "../../etc/passwd", "/abs", "a/b/c/d/e", "x:", "ns/../m", "m\u{0}x", "..", "m:../../t"];
    for name in traversal {
        assert_eq!(
            post(&server, "/api/show", json!({"model": name})),
            error(StatusCode::BAD_REQUEST, "invalid model name")
        );
        assert_eq!(
            post(&server, "/api/create", json!({"model": name, "from": "keep"})),
            error(StatusCode::BAD_REQUEST, "invalid model name")
        );
        assert_eq!(
            post(&server, "/api/create", json!({"model": "ok", "from": name})),
            error(StatusCode::BAD_REQUEST, "invalid model name")
        );
        assert_eq!(
            post(&server, "/api/copy", json!({"source": "keep", "destination": name})),
            error(StatusCode::BAD_REQUEST, &format!("destination \"{name}\" is invalid"))
        );
        let resp = http().delete(server.url("/api/delete")).json(&json!({"model": name})).send().unwrap();
        assert_eq!(body(resp), error(StatusCode::BAD_REQUEST, &format!("name \"{name}\" is invalid")));
    }
    assert_eq!(post(&server, "/api/show", json!({})), error(StatusCode::BAD_REQUEST, "model is required"));

    let files = |f: &str, d: &str| json!({"model": "m", "files": {f: d}});
    let absent = Digest::of(b"never uploaded");
    let cases = [
        (files("../evil.gguf", &truncated.to_string()), "file path must be relative: \"../evil.gguf\""),
        (files("/etc/x.gguf", &truncated.to_string()), "file path must be relative: \"/etc/x.gguf\""),
        (files("m.gguf", "sha256:../../x"), "invalid digest format for \"m.gguf\": \"sha256:../../x\""),
        (files("m.gguf", ""), "invalid digest format for \"m.gguf\": \"\""),
        (
            files("m.gguf", &absent.to_string()),
            &*format!("blob \"{absent}\" not found, upload it with POST /api/blobs/{absent} first").leak(),
        ),
        (files("x.safetensors", &text.to_string()), "config.json is missing from the model directory"),
        (files("../x.safetensors", &text.to_string()), "file path must be relative: \"../x.safetensors\""),
        (json!({"model": "m"}), "neither 'from' or 'files' was specified"),
        (json!({"model": "m", "from": "keep", "parameters": {"bogus": 1}}), "unknown parameter 'bogus'"),
        (json!({"model": "m", "from": "keep", "parameters": {"num_ctx": "big"}}), "option \"num_ctx\" must be of type integer"),
        (json!({"model": "m", "from": "keep", "parameters": {"stop": "x"}}), "option \"stop\" must be of type array"),
        (json!({"model": "m", "from": "keep", "quantize": "q4_K_M"}), "quantization is only supported for F16, BF16 and F32 models"),
        (json!({"model": "m", "from": "keep", "quantize": "q9_X"}), "unsupported quantization type q9_X - supported types are F32, F16, BF16, Q4_0, Q4_1, Q4_K_S, Q4_K_M, Q5_K_M, Q6_K, Q8_0"),
    ];
    for (req, message) in cases {
        assert_eq!(post(&server, "/api/create", req.clone()), error(StatusCode::BAD_REQUEST, message), "{req}");
    }
    assert_eq!(
        post(&server, "/api/create", json!({"model": "m", "from": "ghost"})),
        error(StatusCode::NOT_FOUND, "model \"ghost:latest\" not found")
    );
    for (digest, what) in [(truncated, "truncated"), (four_bytes, "four bytes")] {
        let (status, v) = post(&server, "/api/create", files("model.gguf", &digest.to_string()));
        assert_eq!(status, 400, "{what}");
        assert!(v["error"].as_str().unwrap().starts_with("model.gguf: invalid GGUF file: "), "{what}: {v}");
    }

    // A body over the limit is refused before it is read: the answer comes from the declared
    // length alone. (Sending 65 MB with a client races with that early answer: the client may
    // see the connection close while still writing.)
    let resp = raw(
        &server,
        &format!(
            "POST /api/show HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{\"model\": \"",
            65u64 << 20
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("request body is larger than"), "{resp}");

    assert!(server.alive());
    assert_eq!(tree(&server.models), snapshot, "the store is unchanged");
    let (_, show) = post(&server, "/api/show", json!({"model": "keep"}));
    assert_eq!(show["system"], "precious");
}

#[test]
fn host_header_guard_on_loopback() {
    let server = Server::start();
    let get =
        |host: &str| raw(&server, &format!("GET /api/version HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
    for ok in ["localhost", "127.0.0.1:11434", "[::1]:11434", "app.localhost", "10.1.2.3"] {
        assert!(get(ok).starts_with("HTTP/1.1 200"), "{ok}");
    }
    for bad in ["evil.com", "evil.com:11434", "attacker.example.net", "1.2.3.4"] {
        let resp = get(bad);
        assert!(resp.starts_with("HTTP/1.1 403"), "{bad}: {resp}");
        assert!(!resp.contains("version"), "no body for refused hosts");
    }
}

#[test]
fn cors_allows_local_origins_and_refuses_others() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_in(&tmp.path().join("m"), &[("OLLAMA_ORIGINS", "https://webui.example")]);
    let get = |origin: &str| {
        raw(
            &server,
            &format!("GET /api/version HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"),
        )
    };
    for ok in ["http://localhost:3000", "https://webui.example", "chrome-extension://abcdef", "app://x"] {
        let resp = get(ok);
        assert!(resp.starts_with("HTTP/1.1 200"), "{ok}: {resp}");
        assert!(resp.to_ascii_lowercase().contains(&format!("access-control-allow-origin: {ok}")), "{resp}");
    }
    for bad in ["https://evil.example", "http://localhost:3000.evil.example", "null"] {
        assert!(get(bad).starts_with("HTTP/1.1 403"), "{bad}");
    }
    // A cross-site "simple" POST from a refused origin never reaches the handler.
    let resp = raw(
        &server,
        "DELETE /api/delete HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\nContent-Length: 17\r\n\
         Connection: close\r\n\r\n{\"model\":\"keep\"}\n",
    );
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let preflight = raw(
        &server,
        "OPTIONS /api/chat HTTP/1.1\r\nHost: localhost\r\nOrigin: http://127.0.0.1:5173\r\n\
         Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n",
    )
    .to_ascii_lowercase();
    assert!(preflight.starts_with("http/1.1 204"), "{preflight}");
    assert!(preflight.contains("access-control-allow-methods: get, post"));
    assert!(preflight.contains("access-control-allow-headers: authorization, content-type"));
}

fn age_all(dir: &std::path::Path) {
    for f in fs::read_dir(dir).unwrap().flatten() {
        let file = fs::File::options().write(true).open(f.path()).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(7200)).unwrap();
    }
}

#[test]
fn unreferenced_blobs_are_pruned_at_start_unless_noprune() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let server = Server::start_in(&models, &[]);
    create(&server, "tiny", json!({"system": "kept"}));
    let orphan = upload(&server, b"an orphan blob");
    server.stop();
    fs::write(models.join("blobs/.tmp-crash"), b"partial").unwrap();
    age_all(&models.join("blobs"));

    let server = Server::start_in(&models, &[("OLLAMA_NOPRUNE", "1")]);
    assert!(models.join("blobs").join(orphan.file_name()).exists());
    server.stop();

    let server = Server::start_in(&models, &[]);
    assert!(!models.join("blobs").join(orphan.file_name()).exists());
    assert!(!models.join("blobs/.tmp-crash").exists());
    let (status, show) = post(&server, "/api/show", json!({"model": "tiny"}));
    assert_eq!((status, show["system"].as_str()), (StatusCode::OK, Some("kept")));
}

/// A models directory exactly as Ollama leaves it after `ollama pull llama3.2:1b`.
#[test]
fn serves_a_store_written_by_ollama() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    fs::create_dir_all(models.join("blobs")).unwrap();
    let gguf = tiny_bytes();
    let config = br#"{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"1.2B","file_type":"Q8_0","architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let license = b"LLAMA 3.2 COMMUNITY LICENSE AGREEMENT";
    for b in [&gguf[..], config, license] {
        fs::write(models.join("blobs").join(Digest::of(b).file_name()), b).unwrap();
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"{}","size":{}}},{{"mediaType":"application/vnd.ollama.image.license","digest":"{}","size":{}}}]}}"#,
        Digest::of(config),
        config.len(),
        Digest::of(&gguf),
        gguf.len(),
        Digest::of(license),
        license.len()
    );
    let path = models.join("manifests/registry.ollama.ai/library/llama3.2/1b");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, &manifest).unwrap();
    age_all(&models.join("blobs"));

    let server = Server::start_in(&models, &[]);
    let tags = body(http().get(server.url("/api/tags")).send().unwrap()).1;
    assert_eq!(tags["models"][0]["name"], "llama3.2:1b");
    assert_eq!(tags["models"][0]["digest"], Digest::of(manifest.as_bytes()).hex());
    assert_eq!(tags["models"][0]["details"]["parameter_size"], "1.2B");
    let (status, show) = post(&server, "/api/show", json!({"model": "LLAMA3.2:1B"}));
    assert_eq!(status, 200);
    assert_eq!(show["license"], "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT");
    assert!(server.ok(&["list"]).contains("llama3.2:1b"));
    // Start-up pruning kept every blob the manifest references.
    assert_eq!(tree(&models.join("blobs")).len(), 3);
    assert_eq!(fs::read_to_string(&path).unwrap(), manifest, "the manifest is untouched");
}

/// Each thread uploads the shared weights, creates its model and deletes its neighbour's. Before
/// blobs checked or uploaded through `/api/blobs` were leased, a delete could collect the weights
/// between another thread's upload and create, and that create failed with 400 `blob not found`.
#[test]
fn concurrent_creates_and_deletes_over_http() {
    let server = Server::start();
    let gguf = tiny_bytes();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (server, gguf) = (&server, &gguf);
            s.spawn(move || {
                for i in 0..10 {
                    let d = upload(server, gguf);
                    let req = json!({"model": format!("m{t}"), "files": {"model.gguf": d.to_string()},
                                     "system": format!("{t}/{i}"), "stream": false});
                    let (status, v) = post(server, "/api/create", req);
                    assert_eq!(status, 200, "{v}");
                    let victim = format!("m{}", (t + 1) % 4);
                    let status = http()
                        .delete(server.url("/api/delete"))
                        .json(&json!({"model": victim}))
                        .send()
                        .unwrap()
                        .status();
                    assert!(status == 200 || status == 404, "{status}");
                }
            });
        }
    });
    let tags = body(http().get(server.url("/api/tags")).send().unwrap()).1;
    for m in tags["models"].as_array().unwrap() {
        let (status, _) = post(&server, "/api/show", json!({"model": m["name"]}));
        assert_eq!(status, 200, "{m}");
    }
}
