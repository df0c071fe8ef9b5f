//! The official client libraries (ollama-python, openai, anthropic, pinned in
//! `tests/clients/requirements.txt`) driving a real `corral serve` with real models: SmolLM2 for
//! answers, Qwen2.5-Coder 0.5B for tool calls, all-MiniLM-L6-v2 (imported from safetensors) for
//! embeddings, SmolLM2 with random-weight projectors for images and for sound, and a random-weight
//! cross-encoder for reranking. The server asks for an API key, which every client sends its own way (and a wrong
//! one gets each client's own authentication error). The assertions are in the Python tests under
//! `tests/clients/`; this harness starts the server, creates the models and runs pytest.
//!
//! The interpreter comes from `CORRAL_TEST_PYTHON`, which `scripts/test.sh` sets to a virtual
//! environment made by `scripts/client-env.sh`.

mod common;

use std::process::Command;

use common::{python, stderr, Server};

/// The key the server asks for (one of two) and the clients send.
const KEY: &str = "corral-e2e-key";

#[test]
fn official_client_libraries() {
    let python = python();
    // Every client passes a key its own way (issue 13): ollama-python reads OLLAMA_API_KEY, the
    // OpenAI and Anthropic clients take `api_key`; the CLI sends OLLAMA_API_KEY too.
    let server = Server::start_env(&[("CORRAL_API_KEYS", &format!("other-key,{KEY}"))]);
    let dir = tempfile::tempdir().unwrap();
    for (name, path) in [("smollm2", corral_testkit::smollm2()), ("qwen", corral_testkit::qwen_coder())] {
        let modelfile = dir.path().join(name);
        std::fs::write(&modelfile, format!("FROM {}\n", path.display())).unwrap();
        let out = server.corral(&["create", name, "-f", modelfile.to_str().unwrap()]);
        assert!(out.status.success(), "create {name}: {}", stderr(&out));
    }
    let modelfile = dir.path().join("all-minilm");
    std::fs::write(&modelfile, format!("FROM {}\n", corral_testkit::minilm_dir().display())).unwrap();
    let out = server.corral(&["create", "all-minilm", "-f", modelfile.to_str().unwrap()]);
    assert!(out.status.success(), "create all-minilm: {}", stderr(&out));
    // A vision model as Ollama makes one (issue 29): the language model and a projector, two
    // FROM lines. The projector's weights are random (no real one is reachable here), and so
    // are the two pictures the tests send.
    let projector = dir.path().join("projector.gguf");
    std::fs::write(&projector, corral_testkit::projector::tiny_vision_projector(576, 7)).unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::write(images.join("a.png"), corral_testkit::projector::png(64, 48, 1)).unwrap();
    std::fs::write(images.join("b.png"), corral_testkit::projector::png(64, 48, 2)).unwrap();
    // The first picture again as a (lossless) WebP, which the server turns into pixels llama.cpp reads.
    let mut webp = Vec::new();
    let rgb = corral_testkit::projector::pixels(64, 48, 1);
    image_webp::WebPEncoder::new(&mut webp).encode(&rgb, 64, 48, image_webp::ColorType::Rgb8).unwrap();
    std::fs::write(images.join("a.webp"), webp).unwrap();
    let modelfile = dir.path().join("smolvlm");
    let from = format!("FROM {}\nFROM {}\n", corral_testkit::smollm2().display(), projector.display());
    std::fs::write(&modelfile, from).unwrap();
    let out = server.corral(&["create", "smolvlm", "-f", modelfile.to_str().unwrap()]);
    assert!(out.status.success(), "create smolvlm: {}", stderr(&out));
    // And one that hears, with a random-weight audio projector, and two recordings.
    use corral_testkit::audio::{tiny_audio_projector, wav, SAMPLE_RATE};
    let projector = dir.path().join("audio.gguf");
    std::fs::write(&projector, tiny_audio_projector(576, 3)).unwrap();
    std::fs::write(images.join("a.wav"), wav(25.0, SAMPLE_RATE, 1)).unwrap();
    std::fs::write(images.join("b.wav"), wav(25.0, SAMPLE_RATE, 2)).unwrap();
    let modelfile = dir.path().join("smolaudio");
    // A transcription has no length limit of its own, and noise may ramble to the context's end.
    let from = format!(
        "FROM {}\nFROM {}\nPARAMETER num_predict 24\n",
        corral_testkit::smollm2().display(),
        projector.display()
    );
    std::fs::write(&modelfile, from).unwrap();
    let out = server.corral(&["create", "smolaudio", "-f", modelfile.to_str().unwrap()]);
    assert!(out.status.success(), "create smolaudio: {}", stderr(&out));
    // A random-weight cross-encoder reranker (BERT, llama.cpp's RANK pooling).
    let reranker = dir.path().join("reranker.gguf");
    std::fs::write(&reranker, corral_testkit::reranker::tiny_reranker(1)).unwrap();
    let modelfile = dir.path().join("reranker");
    std::fs::write(&modelfile, format!("FROM {}\n", reranker.display())).unwrap();
    let out = server.corral(&["create", "reranker", "-f", modelfile.to_str().unwrap()]);
    assert!(out.status.success(), "create reranker: {}", stderr(&out));
    // An XLM-RoBERTa cross-encoder as Hugging Face ships one (bge-reranker-v2-m3's layout),
    // converted by `create` from its directory.
    let xlmr = dir.path().join("xlmr-reranker");
    std::fs::create_dir(&xlmr).unwrap();
    corral_testkit::xlmr::tiny_xlmr_cross_encoder(&xlmr, 2);
    let modelfile = dir.path().join("xlmr-modelfile");
    std::fs::write(&modelfile, format!("FROM {}\n", xlmr.display())).unwrap();
    let out = server.corral(&["create", "xlmr-reranker", "-f", modelfile.to_str().unwrap()]);
    assert!(out.status.success(), "create xlmr-reranker: {}", stderr(&out));
    let mut pytest = pytest(&python, &server, &["--ignore", &format!("{TESTS}/tls"), TESTS]);
    let report = run(pytest.env("CORRAL_TEST_IMAGES", &images), &server);
    println!("{report}");
}

const TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients");

/// pytest over `args`, told where the server is and its key.
fn pytest(python: &str, server: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", "--durations=8"])
        .args(args)
        .env("CORRAL_URL", &server.base)
        .env("CORRAL_API_KEY", KEY)
        .env("OLLAMA_API_KEY", KEY)
        .env("NO_PROXY", "127.0.0.1,localhost");
    cmd
}

/// Runs pytest and requires every test to pass (none skipped or deselected); returns the report.
fn run(pytest: &mut Command, server: &Server) -> String {
    let out = pytest.output().unwrap_or_else(|e| panic!("cannot run {pytest:?}: {e}"));
    let report = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "client tests failed:\n{report}\nserver log:\n{}", server.log());
    assert!(report.contains(" passed") && !report.contains("skipped"), "{report}");
    report
}

/// Issue 31: the same libraries over HTTPS, trusting the server's private CA through
/// `SSL_CERT_FILE` (tests/clients/tls).
#[test]
fn official_client_libraries_over_https() {
    let python = python();
    let ca = common::tls::Ca::new();
    let (cert, key, _) = ca.issue("server", &["localhost", "127.0.0.1"], false);
    let server = Server::start_env(&[
        ("CORRAL_TLS_CERT", cert.to_str().unwrap()),
        ("CORRAL_TLS_KEY", key.to_str().unwrap()),
        ("CORRAL_CA_BUNDLE", ca.pem().to_str().unwrap()),
        ("CORRAL_API_KEYS", KEY),
    ]);
    let modelfile = ca.dir.path().join("Modelfile");
    std::fs::write(&modelfile, format!("FROM {}\n", corral_testkit::smollm2().display())).unwrap();
    server.ok(&["create", "smollm2", "-f", modelfile.to_str().unwrap()]);
    let report = run(pytest(&python, &server, &[&format!("{TESTS}/tls")]).env("SSL_CERT_FILE", ca.pem()), &server);
    assert!(report.contains("5 passed"), "{report}");
}
