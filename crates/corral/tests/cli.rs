//! The CLI against a real server: create, list, show, cp, rm — output and exit codes.

mod common;

use common::{stderr, stdout, tiny_gguf, tree, Server};
use std::fs;

/// Replaces what changes between runs (IDs, times, temp paths) in CLI output.
fn normalize(text: &str, server: &Server) -> String {
    let blobs = server.models.join("blobs").display().to_string();
    text.replace(&blobs, "<blobs>")
        .lines()
        .map(|l| {
            // `list` rows: NAME  ID  SIZE  MODIFIED — mask the 12-hex ID and the time.
            let cols: Vec<&str> = l.split("    ").filter(|c| !c.trim().is_empty()).collect();
            if cols.len() == 4 && cols[1].trim().len() == 12 && cols[1].trim().chars().all(|c| c.is_ascii_hexdigit()) {
                format!("{} <id> {} <modified>", cols[0].trim(), cols[2].trim())
            } else {
                l.trim_end().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const MODELFILE: &str = r#"# A tiny model for tests.
FROM ./tiny.gguf
TEMPLATE """{{ if .System }}<|system|>{{ .System }}{{ end }}<|user|>{{ .Prompt }}<|assistant|>"""
SYSTEM You are a terse assistant.
PARAMETER temperature 0.3
PARAMETER num_ctx 1024
PARAMETER stop <|user|>
PARAMETER stop "<|system|>"
MESSAGE user Hello?
MESSAGE assistant Hi.
LICENSE """Test License
Line two
Line three"""
"#;

fn setup(server: &Server) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    tiny_gguf(dir.path());
    fs::write(dir.path().join("Modelfile"), MODELFILE).unwrap();
    let out = server.corral_in(Some(dir.path()), &["create", "tiny"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for status in ["gathering model components", "copying file sha256:", "parsing GGUF", "writing manifest", "success"]
    {
        assert!(err.contains(status), "missing {status:?} in:\n{err}");
    }
    dir
}

#[test]
fn create_list_show_copy_remove() {
    let server = Server::start();
    let _dir = setup(&server);

    insta::assert_snapshot!("list", normalize(&server.ok(&["list"]), &server));
    insta::assert_snapshot!("show", normalize(&server.ok(&["show", "tiny"]), &server));
    insta::assert_snapshot!("show_parameters", server.ok(&["show", "tiny", "--parameters"]));
    insta::assert_snapshot!("show_modelfile", normalize(&server.ok(&["show", "TINY", "--modelfile"]), &server));
    assert_eq!(server.ok(&["show", "tiny", "--system"]), "You are a terse assistant.\n");
    assert_eq!(server.ok(&["show", "tiny", "--license"]), "Test License\nLine two\nLine three\n");
    assert!(server.ok(&["show", "tiny", "--template"]).starts_with("{{ if .System }}"));

    assert_eq!(server.ok(&["cp", "tiny", "other:v2"]), "copied 'tiny' to 'other:v2'\n");
    let listed = server.ok(&["ls"]);
    let ids: Vec<&str> = listed.lines().skip(1).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1], "a copy has the same manifest, hence the same ID");
    assert_eq!(server.ok(&["ls", "OTH"]).lines().count(), 2, "prefix filter is case-insensitive");

    assert_eq!(server.ok(&["rm", "tiny"]), "deleted 'tiny'\n");
    let out = server.corral(&["rm", "tiny"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Error: model 'tiny' not found\n");
    // The copy still works: its blobs were kept.
    assert!(server.ok(&["show", "other:v2"]).contains("quantization        Q8_0"));
    server.ok(&["rm", "other:v2"]);
    assert!(tree(&server.models.join("blobs")).is_empty(), "last reference gone, blobs removed");
}

/// `show --modelfile` output fed back to `create` gives the very same model (same manifest, so
/// the same ID), without uploading the weights again.
#[test]
fn show_modelfile_round_trips() {
    let server = Server::start();
    let dir = setup(&server);
    let text = server.ok(&["show", "tiny", "--modelfile"]);
    fs::write(dir.path().join("Modelfile2"), &text).unwrap();
    server.ok(&["create", "again", "-f", dir.path().join("Modelfile2").to_str().unwrap()]);
    let listed = server.ok(&["list"]);
    let ids: Vec<&str> = listed.lines().skip(1).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1], "{listed}");
    assert_eq!(server.log().matches("stored uploaded blob").count(), 1, "weights uploaded once");
}

#[test]
fn adapter_and_digest_in_a_modelfile() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let weights = tiny_gguf(dir.path());
    fs::write(dir.path().join("lora.gguf"), corral_testkit::lora_adapter(64, 2, 8, 0.01, 1)).unwrap();
    fs::write(dir.path().join("Modelfile"), "FROM ./tiny.gguf\nADAPTER ./lora.gguf\n").unwrap();
    let out = server.corral_in(Some(dir.path()), &["create", "tuned"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let modelfile = normalize(&server.ok(&["show", "tuned", "--modelfile"]), &server);
    assert!(modelfile.contains("\nADAPTER <blobs>/sha256-"), "{modelfile}");

    // FROM @sha256:<hex> names a blob the server already has.
    let digest = corral_types::Digest::of(&fs::read(weights).unwrap());
    fs::write(dir.path().join("Modelfile"), format!("FROM @{digest}\nSYSTEM by digest\n")).unwrap();
    let out = server.corral_in(Some(dir.path()), &["create", "by-digest"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.ok(&["show", "by-digest", "--system"]), "by digest\n");
}

/// Issue 15: `DRAFT` in a Modelfile uploads the draft and stores it as its own layer, shown by
/// `show --modelfile`; the round trip through that Modelfile gives the same model; a draft
/// with another vocabulary, or the FROM file itself, is refused.
#[test]
fn issue_15_draft_in_a_modelfile() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    tiny_gguf(dir.path());
    let draft = corral_testkit::tiny_llama(&corral_testkit::TinySpec { seed: 7, ..Default::default() }, None);
    fs::write(dir.path().join("draft.gguf"), draft).unwrap();
    fs::write(dir.path().join("Modelfile"), "FROM ./tiny.gguf\nDRAFT ./draft.gguf\n").unwrap();
    let out = server.corral_in(Some(dir.path()), &["create", "drafted"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let modelfile = server.ok(&["show", "drafted", "--modelfile"]);
    assert!(normalize(&modelfile, &server).contains("\nDRAFT <blobs>/sha256-"), "{modelfile}");
    fs::write(dir.path().join("Modelfile2"), &modelfile).unwrap();
    server.ok(&["create", "again", "-f", dir.path().join("Modelfile2").to_str().unwrap()]);
    let listed = server.ok(&["list"]);
    let ids: Vec<&str> = listed.lines().skip(1).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1], "{listed}");

    fs::write(dir.path().join("Modelfile"), "FROM ./tiny.gguf\nDRAFT ./tiny.gguf\n").unwrap();
    let out = server.corral_in(Some(dir.path()), &["create", "self"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("DRAFT must not reference the same local path as FROM"), "{}", stderr(&out));

    fs::write(
        dir.path().join("smol-draft.gguf"),
        corral_testkit::tiny_llama_with_smollm2_tokenizer(&Default::default()),
    )
    .unwrap();
    fs::write(dir.path().join("Modelfile"), "FROM ./tiny.gguf\nDRAFT ./smol-draft.gguf\n").unwrap();
    let out = server.corral_in(Some(dir.path()), &["create", "mismatch"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("draft model smol-draft.gguf does not share the model's vocabulary"), "{err}");
}

#[test]
fn real_model_details() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let smol = corral_testkit::smollm2();
    fs::write(dir.path().join("Modelfile"), format!("FROM {}\n", smol.display())).unwrap();
    let mf = dir.path().join("Modelfile");
    server.ok(&["create", "smollm2:135m", "-f", mf.to_str().unwrap()]);
    insta::assert_snapshot!("show_smollm2", server.ok(&["show", "smollm2:135m"]));
    let template = server.ok(&["show", "smollm2:135m", "--template"]);
    assert!(template.contains("<|im_start|>"), "the GGUF chat template is shown: {template}");
    let verbose = server.ok(&["show", "smollm2:135m", "--verbose"]);
    assert!(verbose.contains("  Metadata\n") && verbose.contains("  Tensors\n"));
    let tensor = verbose.lines().find(|l| l.contains("token_embd.weight")).unwrap();
    assert_eq!(tensor.split_whitespace().collect::<Vec<_>>(), ["token_embd.weight", "Q8_0", "[576", "49152]"]);
    assert!(verbose.contains("tokenizer.ggml.tokens") && verbose.contains("more]"));

    // The same file again, under another name: not uploaded or stored twice.
    server.ok(&["create", "smol-copy", "-f", mf.to_str().unwrap()]);
    assert_eq!(server.log().matches("stored uploaded blob").count(), 1);
    let ggufs = tree(&server.models.join("blobs"))
        .into_iter()
        .filter(|b| fs::metadata(server.models.join("blobs").join(b)).unwrap().len() > 1_000_000)
        .count();
    assert_eq!(ggufs, 1);
    let listed = server.ok(&["list"]);
    assert!(listed.contains("smollm2:135m") && listed.contains("98 MB"), "{listed}");
}

#[test]
fn errors_go_to_stderr_with_exit_code_1() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Some(dir.path());
    let fail = |args: &[&str], modelfile: Option<&str>| {
        if let Some(text) = modelfile {
            fs::write(dir.path().join("Modelfile"), text).unwrap();
        }
        let out = server.corral_in(d, args);
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
        assert!(stdout(&out).is_empty());
        stderr(&out)
    };
    let before = tree(&server.models);

    assert_eq!(fail(&["show", "nope"], None), "Error: model 'nope' not found\n");
    assert_eq!(fail(&["show", "../../etc"], None), "Error: invalid model name\n");
    assert!(fail(&["show", "x", "--license", "--system"], None).starts_with("Error: only one of"));
    assert!(fail(&["create", "m", "-f", "absent"], None).starts_with("Error: specified Modelfile wasn't found: absent"));
    assert_eq!(
        fail(&["create", "m"], Some("FROM x\nPARAMETR temperature 1\n")),
        "Error: Modelfile: (line 2): unknown instruction \"PARAMETR\": command must be one of \"from\", \"license\", \
         \"template\", \"system\", \"adapter\", \"draft\", \"renderer\", \"parser\", \"parameter\", \"message\", or \"requires\"\n"
    );
    assert_eq!(
        fail(&["create", "m"], Some("FROM x\nPARAMETER temperature hot\n")),
        "Error: Modelfile: (line 2): invalid float value [hot]\n"
    );
    let err = fail(&["create", "m"], Some("# comment\nFROM ./missing.gguf\n"));
    assert!(err.starts_with("Error: (line 2): FROM file \"./missing.gguf\" does not exist"), "{err}");
    // Server-side errors come after the progress lines; the last line is the error.
    let last_line = |s: String| s.lines().last().unwrap_or_default().to_string();
    assert_eq!(
        last_line(fail(&["create", "m"], Some("FROM no-such-model\n"))),
        "Error: model \"no-such-model:latest\" not found"
    );
    assert_eq!(fail(&["create", "bad/../name"], Some("FROM x\n")), "Error: invalid model name\n");

    // A truncated GGUF is refused by the server; the store is unchanged and the server still up.
    let mut bytes = fs::read(tiny_gguf(dir.path())).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(dir.path().join("tiny.gguf"), &bytes).unwrap();
    let err = last_line(fail(&["create", "m"], Some("FROM ./tiny.gguf\n")));
    assert!(err.starts_with("Error: tiny.gguf: invalid GGUF file: "), "{err}");
    let after: Vec<String> =
        tree(&server.models).into_iter().filter(|f| !before.contains(f) && !f.starts_with("blobs/sha256-")).collect();
    assert!(after.is_empty(), "no manifest or temp file was written: {after:?}");
    assert!(server.ok(&["list"]).starts_with("NAME"));

    let out =
        std::process::Command::new(common::BIN).args(["list"]).env("OLLAMA_HOST", "127.0.0.1:1").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: could not connect to corral server at http://127.0.0.1:1, run 'corral serve' to start it\n"
    );
}

/// Issue 13: with `CORRAL_API_KEYS` set the CLI needs `OLLAMA_API_KEY`, and says why without it.
#[test]
fn the_cli_sends_ollama_api_key() {
    let mut server = Server::start_env(&[("CORRAL_API_KEYS", "sesame")]);
    assert_eq!(server.ok(&["list"]), "NAME    ID    SIZE    MODIFIED    \n");
    server.api_key = Some("wrong".into());
    let out = server.corral(&["list"]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out), "Error: invalid API key\n");
    server.api_key = None;
    let out = server.corral(&["ps"]);
    assert_eq!(
        stderr(&out),
        "Error: missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'\n"
    );
}

/// Issue 27: `corral --version` against a Corral server prints the server's own version and the
/// Ollama API version it answers clients with; the client's only when it differs.
#[test]
fn version_names_corral_and_the_ollama_api() {
    let server = Server::start();
    let out = server.corral(&["--version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "corral version is {}\nOllama API version is {}\n",
            env!("CARGO_PKG_VERSION"),
            corral_server::OLLAMA_API_VERSION
        )
    );
    assert_eq!(stderr(&out), "");
}

/// Issue 29: a vision model made from two FROM lines shows its Projector section; `corral run`
/// takes the image files a prompt names, says so on stderr, and the answer depends on the file.
#[test]
fn issue_29_run_attaches_the_images_a_prompt_names() {
    let server = Server::start_env(&[("CORRAL_NUM_THREAD", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let projector = dir.path().join("mmproj.gguf");
    fs::write(&projector, corral_testkit::projector::tiny_vision_projector(576, 7)).unwrap();
    let mf = dir.path().join("Modelfile");
    let from = format!(
        "FROM {}\nFROM {}\nPARAMETER temperature 0\nPARAMETER num_predict 12\n",
        corral_testkit::smollm2().display(),
        projector.display()
    );
    fs::write(&mf, from).unwrap();
    server.ok(&["create", "smolvlm", "-f", mf.to_str().unwrap()]);
    let shown = server.ok(&["show", "smolvlm"]);
    let section = shown.split("  Projector\n").nth(1).unwrap_or_else(|| panic!("no Projector section: {shown}"));
    assert!(section.lines().next().is_some_and(|l| l.split_whitespace().eq(["architecture", "clip"])), "{shown}");
    assert!(shown.lines().any(|l| l.trim() == "vision"), "{shown}");

    let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
    fs::write(&a, corral_testkit::projector::png(64, 48, 1)).unwrap();
    fs::write(&b, corral_testkit::projector::png(64, 48, 2)).unwrap();
    let ask = |image: &std::path::Path| {
        let out = server.corral(&["run", "smolvlm", &format!("what is in {}?", image.display())]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains(&format!("Added image '{}'", image.display())), "{}", stderr(&out));
        stdout(&out)
    };
    let (first, second) = (ask(&a), ask(&b));
    assert!(!first.trim().is_empty() && first != second, "{first:?} / {second:?}");
}
