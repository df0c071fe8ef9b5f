//! Helpers of the Vulkan tests (issue 30): the library directory with the Vulkan module built by
//! `scripts/gpu-module.sh vulkan` (named in `CORRAL_TEST_VULKAN` by `scripts/test.sh`), servers on
//! it with SmolLM2, and what they report of where models went.

use std::path::{Path, PathBuf};
use std::process::Command;

use corral_types::runner::Backends;
use serde_json::{json, Value};

use super::{body, http, post, Server, BIN};

/// A copy of the library directory beside the binary, with the Vulkan module added.
pub fn vulkan_libraries(into: &Path) -> PathBuf {
    let module = std::env::var("CORRAL_TEST_VULKAN").unwrap_or_else(|_| {
        panic!("CORRAL_TEST_VULKAN is not set: run the tests with scripts/test.sh, which builds the Vulkan module")
    });
    let dir = into.join("lib/corral");
    std::fs::create_dir_all(&dir).unwrap();
    let libs = Path::new(BIN).parent().unwrap().join("lib/corral");
    for from in [libs, PathBuf::from(module)] {
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    assert!(dir.join("libggml-vulkan.so").is_file(), "no Vulkan module in CORRAL_TEST_VULKAN");
    dir
}

pub fn probe(libs: &Path, visible: Option<&str>) -> Backends {
    probe_with(libs, visible, &[])
}

pub fn probe_with(libs: &Path, visible: Option<&str>, args: &[&str]) -> Backends {
    let mut cmd = Command::new(BIN);
    cmd.args(["runner", "--probe", "--libs"]).arg(libs).args(args).env_remove("GGML_VK_VISIBLE_DEVICES");
    if let Some(v) = visible {
        cmd.env("GGML_VK_VISIBLE_DEVICES", v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "probe failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A server on the libraries with the Vulkan module, the software device visible, and SmolLM2.
pub fn server_with_smollm2(libs: &Path) -> Server {
    server_on(libs, &[("GGML_VK_VISIBLE_DEVICES", "0")])
}

/// A server on `libs` with `env` besides, one thread, and SmolLM2 created.
pub fn server_on(libs: &Path, env: &[(&str, &str)]) -> Server {
    let mut all = vec![("CORRAL_LIBRARY_PATH", libs.to_str().unwrap()), ("CORRAL_NUM_THREAD", "1")];
    all.extend_from_slice(env);
    let server = Server::start_env(&all);
    let modelfile = libs.join("../Modelfile");
    std::fs::write(&modelfile, format!("FROM {}\n", corral_testkit::smollm2().display())).unwrap();
    server.ok(&["create", "smollm2", "-f", modelfile.to_str().unwrap()]);
    server
}

/// What `/api/ps` says of the one model loaded: `size`, `size_vram`.
pub fn placement(server: &Server) -> (u64, u64) {
    let (_, ps) = body(http().get(server.url("/api/ps")).send().unwrap());
    let m = &ps["models"][0];
    (m["size"].as_u64().unwrap(), m["size_vram"].as_u64().unwrap())
}

pub fn answer(server: &Server, options: Value) -> Value {
    answer_to(server, "Once upon a time", options)
}

pub fn answer_to(server: &Server, prompt: &str, options: Value) -> Value {
    let body = json!({"model": "smollm2", "prompt": prompt, "raw": true, "stream": false,
        "logprobs": true, "top_logprobs": 5, "options": options});
    let (status, v) = post(server, "/api/generate", body);
    assert_eq!(status, 200, "{v}");
    v
}

/// Device memory the loaded models hold on `device`, from `/metrics`.
pub fn used_on(server: &Server, device: &str) -> u64 {
    let metrics = http().get(server.url("/metrics")).send().unwrap().text().unwrap();
    let key = format!("corral_device_memory_used_bytes{{device=\"{device}\",kind=\"gpu\"}} ");
    let line = metrics.lines().find(|l| l.starts_with(&key)).unwrap_or_else(|| panic!("no {key} in\n{metrics}"));
    line[key.len()..].parse::<f64>().unwrap() as u64
}
