//! Issue 32: the chat page at `/ui/`.
//!
//! Its files as served (content types, the Content-Security-Policy, compression, `CORRAL_UI=0`),
//! and the page itself in a real browser: `tests/ui/test_chat_page.py` drives Debian's headless
//! chromium through chromedriver (Selenium from `tests/clients/requirements.txt`, run by the
//! interpreter of `CORRAL_TEST_PYTHON`) against a keyed server with SmolLM2, a vision model and a
//! model waiting on a loopback registry, and one that hears. Screenshots of each step land in
//! `target/ui-screenshots/`.

mod common;

use std::process::Command;

use common::{create_from, http, runnable_bytes, stderr, DockerRegistry, Server};
use serde_json::json;

const KEY: &str = "corral-ui-key";

#[test]
fn issue_32_the_page_is_served_under_a_strict_policy_and_compressed() {
    let server = Server::start();
    let page = http().get(server.url("/ui/")).send().unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    for rule in
        ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(rule), "{rule} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().unwrap();
    // Nothing from another origin, nothing inline.
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("style="), "{html}");
    assert!(html.contains(r#"<script type="module" src="app.js"></script>"#));

    // Every file the page names is there, with its type; a JS module as JavaScript.
    let (mut plain, mut gzip) = (0, 0);
    for (file, kind) in [
        ("app.js", "text/javascript"),
        ("api.js", "text/javascript"),
        ("chat.js", "text/javascript"),
        ("models.js", "text/javascript"),
        ("store.js", "text/javascript"),
        ("markdown.js", "text/javascript"),
        ("style.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let resp = http().get(server.url(&format!("/ui/{file}"))).send().unwrap();
        assert_eq!(resp.status(), 200, "{file}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with(kind), "{file}");
        let etag = resp.headers()["etag"].to_str().unwrap().to_string();
        plain += resp.bytes().unwrap().len();
        // Compressed for a browser that asks, and a 304 for one that has it already.
        let zipped =
            http().get(server.url(&format!("/ui/{file}"))).header("accept-encoding", "gzip, br").send().unwrap();
        assert_eq!(zipped.headers()["content-encoding"], "gzip", "{file}");
        gzip += zipped.bytes().unwrap().len();
        let again = http().get(server.url(&format!("/ui/{file}"))).header("if-none-match", &etag).send().unwrap();
        assert_eq!(again.status(), 304, "{file}");
    }
    eprintln!("the page: {plain} bytes, {gzip} gzip-compressed");
    assert!(gzip < plain / 2, "{gzip} of {plain}");

    // Only the page's own files; `/` stays what clients probe.
    for hostile in ["/ui/secret.txt", "/ui/%2e%2e%2fapi%2ftags", "/ui/..%2f..%2fetc%2fpasswd", "/ui/app.js%00"] {
        assert_eq!(http().get(server.url(hostile)).send().unwrap().status(), 404, "{hostile}");
    }
    assert_eq!(http().get(server.url("/")).send().unwrap().text().unwrap(), "Ollama is running");
    let no_redirect = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let redirect = no_redirect.get(server.url("/ui")).send().unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/ui/");
}

#[test]
fn issue_32_corral_ui_0_turns_the_page_off() {
    let server = Server::start_env(&[("CORRAL_UI", "0")]);
    assert_eq!(http().get(server.url("/ui/")).send().unwrap().status(), 404);
    assert_eq!(http().get(server.url("/ui/app.js")).send().unwrap().status(), 404);
    assert!(!server.log().contains("chat page at"));
}

#[test]
fn issue_32_the_page_needs_no_key_but_its_data_does() {
    let server = Server::start_env(&[("CORRAL_API_KEYS", KEY)]);
    assert_eq!(http().get(server.url("/ui/")).send().unwrap().status(), 200);
    assert_eq!(http().get(server.url("/api/tags")).send().unwrap().status(), 401);
    assert!(server.log().contains("chat page at http://"), "{}", server.log());
}

#[test]
fn issue_32_the_chat_page_in_a_real_browser() {
    let python = common::python();
    // A model on a loopback registry for the page to pull, pushed by another server.
    let registry = DockerRegistry::start();
    let pusher = Server::start();
    assert_eq!(create_from(&pusher, "tiny", &runnable_bytes(7, 2048), json!({})).0, 200);
    let remote = format!("{}/team/tiny:v1", registry.addr);
    pusher.ok(&["cp", "tiny", &remote]);
    pusher.ok(&["push", &remote]);
    drop(pusher);

    let server = Server::start_env(&[("CORRAL_API_KEYS", KEY)]);
    let dir = tempfile::tempdir().unwrap();
    let projector = dir.path().join("projector.gguf");
    std::fs::write(&projector, corral_testkit::projector::tiny_vision_projector(576, 7)).unwrap();
    let image = dir.path().join("picture.png");
    std::fs::write(&image, corral_testkit::projector::png(64, 48, 1)).unwrap();
    let hearing = dir.path().join("audio.gguf");
    std::fs::write(&hearing, corral_testkit::audio::tiny_audio_projector(576, 3)).unwrap();
    let sound = dir.path().join("sound.wav");
    std::fs::write(&sound, corral_testkit::audio::wav(25.0, corral_testkit::audio::SAMPLE_RATE, 1)).unwrap();
    let smollm2 = corral_testkit::smollm2();
    for (name, from) in [
        ("smollm2", format!("FROM {}\n", smollm2.display())),
        ("smolvlm", format!("FROM {}\nFROM {}\n", smollm2.display(), projector.display())),
        ("smolaudio", format!("FROM {}\nFROM {}\n", smollm2.display(), hearing.display())),
    ] {
        let modelfile = dir.path().join(name);
        std::fs::write(&modelfile, from).unwrap();
        let out = server.corral(&["create", name, "-f", modelfile.to_str().unwrap()]);
        assert!(out.status.success(), "create {name}: {}", stderr(&out));
    }

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../ui-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/ui");
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", "--durations=10", tests])
        .env("CORRAL_URL", &server.base)
        .env("CORRAL_API_KEY", KEY)
        .env("CORRAL_UI_SHOTS", &shots)
        .env("CORRAL_TEST_IMAGE", &image)
        .env("CORRAL_TEST_SOUND", &sound)
        .env("CORRAL_PULL", &remote)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let report = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser tests failed:\n{report}\nserver log:\n{}", server.log());
    assert!(report.contains("14 passed") && !report.contains("skipped"), "{report}");
    println!("{report}\nscreenshots in {}", shots.canonicalize().unwrap().display());
    // Every step's screenshot was written.
    let taken = std::fs::read_dir(&shots)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png"));
    assert_eq!(taken.count(), 9, "{:?}", std::fs::read_dir(&shots).unwrap().collect::<Vec<_>>());
}
