//! llama.cpp's backends loaded at run time: the library directory beside the binary, the CPU
//! variant chosen for this machine, modules of other source refused, the binary working after
//! being copied with its directory, and `num_gpu: 0` end to end.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{body, create_from, http, post, runnable_bytes, Server, BIN};
use corral_types::runner::Backends;
use serde_json::json;

/// `lib/corral` beside the binary under test.
fn library_dir() -> PathBuf {
    let dir = Path::new(BIN).parent().unwrap().join("lib/corral");
    assert!(dir.is_dir(), "{} is missing: the engine's build script makes it", dir.display());
    dir
}

/// A copy of the library directory to tamper with.
fn copy_of_libraries(into: &Path) -> PathBuf {
    let dir = into.join("lib/corral");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(library_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

fn probe(exe: &Path, libs: Option<&Path>) -> Backends {
    let mut cmd = Command::new(exe);
    cmd.args(["runner", "--probe"]);
    if let Some(l) = libs {
        cmd.arg("--libs").arg(l);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "probe failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_best_cpu_variant_for_this_machine_is_loaded_from_beside_the_binary() {
    let found = probe(Path::new(BIN), None);
    assert_eq!(Path::new(&found.library_dir), library_dir());
    let variant = found.cpu_variant.as_deref().expect("a CPU variant");
    assert!(library_dir().join(format!("libggml-cpu-{variant}.so")).is_file());
    assert!(found.refused.is_empty(), "{:?}", found.refused);
    assert!(found.source.starts_with("sha256:") && found.source.len() == 71, "{}", found.source);
    assert!(found.devices.iter().any(|d| d.id == "CPU" && d.total_bytes > 0), "{:?}", found.devices);
    // This build's modules all record its source.
    for entry in std::fs::read_dir(library_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(module) = name.strip_suffix(".source") {
            let text = std::fs::read_to_string(library_dir().join(&name)).unwrap();
            assert_eq!(text.trim(), found.source, "{module}");
        }
    }
}

/// The variant the CPU scores best is skipped when its recorded source is another build's; the
/// next best runs, and the refusal names the file and both identities.
#[test]
fn a_module_from_other_source_is_refused_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_of_libraries(tmp.path());
    let best = probe(Path::new(BIN), Some(&dir)).cpu_variant.unwrap();
    let module = dir.join(format!("libggml-cpu-{best}.so"));
    let foreign = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    std::fs::write(dir.join(format!("libggml-cpu-{best}.so.source")), format!("{foreign}\n")).unwrap();
    // A GPU backend dropped in without any record, and one from other source (a real ggml module
    // under the CUDA name, so only the check stands between it and being loaded).
    std::fs::copy(&module, dir.join("libggml-cuda.so")).unwrap();
    std::fs::copy(&module, dir.join("libggml-vulkan.so")).unwrap();
    std::fs::write(dir.join("libggml-vulkan.so.source"), format!("{foreign}\n")).unwrap();

    let found = probe(Path::new(BIN), Some(&dir));
    let next = found.cpu_variant.as_deref().unwrap();
    assert_ne!(next, best, "the tampered variant is not loaded");
    assert!(found.gpu_backends.is_empty(), "{:?}", found.gpu_backends);
    let refused = found.refused.join("\n");
    assert!(
        refused.contains(&format!("libggml-cpu-{best}.so was built from other llama.cpp source ({foreign})")),
        "{refused}"
    );
    assert!(refused.contains(&found.source), "names this build's source: {refused}");
    assert!(refused.contains("libggml-cuda.so has no") && refused.contains("libggml-cuda.so.source"), "{refused}");
    assert!(refused.contains("libggml-vulkan.so was built from other llama.cpp source"), "{refused}");
    assert!(refused.contains("scripts/build-gpu-backend.sh"), "says how to fix it: {refused}");

    // The server runs on what remains, says why at start, and answers.
    let server = Server::start_env(&[("CORRAL_LIBRARY_PATH", dir.to_str().unwrap())]);
    let log = server.log();
    assert!(log.contains("backend refused, running without it") && log.contains("libggml-vulkan.so"), "{log}");
    assert!(log.contains(&format!("variant=\"{next}\"")), "{log}");
    assert_eq!(create_from(&server, "tiny", &runnable_bytes(7, 512), json!({})).0, 200);
    let (status, v) = post(
        &server,
        "/api/generate",
        json!({"model": "tiny", "prompt": "hi", "stream": false, "options": {"num_predict": 3, "temperature": 0}}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["eval_count"], 3);
}

/// With every CPU module refused, a load fails with the reasons instead of crashing.
#[test]
fn no_usable_cpu_backend_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_of_libraries(tmp.path());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".so.source") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let out = Command::new(BIN).args(["runner", "--probe", "--libs"]).arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no usable CPU backend in") && err.contains("libggml-cpu-x64.so has no"), "{err}");
}

/// `corral` and `lib/corral` copied elsewhere together still work: the run path is relative to
/// the binary, and so is the default library directory.
#[test]
fn the_binary_works_after_being_copied_with_its_library_directory() {
    let tmp = tempfile::tempdir().unwrap();
    copy_of_libraries(tmp.path());
    let exe = tmp.path().join("corral");
    std::fs::copy(BIN, &exe).unwrap();
    let found = probe(&exe, None);
    assert_eq!(Path::new(&found.library_dir), tmp.path().join("lib/corral"));
    assert!(found.cpu_variant.is_some());
    let out = Command::new(&exe).arg("--version").env("OLLAMA_HOST", "127.0.0.1:9").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("client version is"), "{out:?}");
}

/// `num_gpu: 0` (CPU only) end to end; the placement shows in `/api/ps`, `corral ps` and `/metrics`.
#[test]
fn num_gpu_zero_runs_on_the_cpu_and_says_so() {
    let server = Server::start();
    assert!(server.log().contains("llama.cpp CPU backend"), "{}", server.log());
    assert_eq!(create_from(&server, "tiny", &runnable_bytes(7, 512), json!({})).0, 200);
    let (status, v) = post(
        &server,
        "/api/generate",
        json!({"model": "tiny", "prompt": "hi", "stream": false, "options": {"num_predict": 4, "num_gpu": 0}}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["eval_count"], 4);
    let (_, ps) = body(http().get(server.url("/api/ps")).send().unwrap());
    let m = &ps["models"][0];
    assert!(m["size"].as_u64().unwrap() > 0);
    assert_eq!(m["size_vram"], 0);
    let table = server.ok(&["ps"]);
    assert!(table.contains("100% CPU"), "{table}");
    let metrics = http().get(server.url("/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("corral_device_memory_total_bytes{device=\"CPU\",kind=\"cpu\"} "), "{metrics}");
    assert!(metrics.contains("corral_device_memory_used_bytes{device=\"CPU\",kind=\"cpu\"} 0"), "{metrics}");
}

/// A runner killed by an illegal instruction (a CPU or virtual machine reporting instructions it
/// does not run: seen with AMX on the lent GPU machine) fails its request; the next runner loads
/// the next best CPU variant and answers.
#[test]
fn a_runner_killed_by_an_illegal_instruction_makes_the_next_skip_its_variant() {
    let server = Server::start();
    assert_eq!(create_from(&server, "tiny", &runnable_bytes(7, 512), json!({})).0, 200);
    let ask = json!({"model": "tiny", "prompt": "hi", "stream": false, "options": {"num_predict": 2}});
    assert_eq!(post(&server, "/api/generate", ask.clone()).0, 200);
    let first = variant_loaded(&server.log(), 1);
    let runner = server.runners()[0];
    assert!(Command::new("kill").args(["-ILL", &runner.to_string()]).status().unwrap().success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.log().contains("later runners skip it") {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(server.log().contains("status=signal: 4 (SIGILL)"), "{}", server.log());
    let (status, v) = post(&server, "/api/generate", ask);
    assert_eq!(status, 200, "{v}");
    let second = variant_loaded(&server.log(), 2);
    assert_ne!(first, second, "{}", server.log());
}

/// The CPU variant of the `n`th "model loaded" line.
fn variant_loaded(log: &str, n: usize) -> String {
    let line = log.lines().filter(|l| l.contains("model loaded")).nth(n - 1).unwrap_or_else(|| panic!("{log}"));
    line.split("cpu_variant=").nth(1).unwrap().split_whitespace().next().unwrap().trim_matches('"').to_string()
}

/// `OLLAMA_KV_CACHE_TYPE` and `OLLAMA_FLASH_ATTENTION` reach llama.cpp: a q8_0 cache (which turns
/// flash attention on) loads, answers and is smaller in `/api/ps`; q4_0 with flash attention forced
/// off falls back to f16 (the size of the default); flash attention forced on answers too. The
/// model has 32-dimension heads: a quantized cache needs rows of whole 32-element blocks.
#[test]
fn kv_cache_types_and_flash_attention_load_and_answer() {
    let spec = corral_testkit::TinySpec { embd: 128, heads: 4, kv_heads: 2, context: 2048, ..Default::default() };
    let model = corral_testkit::tiny_llama_with_smollm2_tokenizer(&spec);
    let ask = json!({"model": "tiny", "prompt": "one two three", "stream": false,
                     "options": {"num_predict": 6, "temperature": 0}});
    let mut sizes = Vec::new();
    for env in [
        &[][..],
        &[("OLLAMA_KV_CACHE_TYPE", "q8_0")][..],
        &[("OLLAMA_KV_CACHE_TYPE", "q4_0"), ("OLLAMA_FLASH_ATTENTION", "0")][..],
        &[("OLLAMA_FLASH_ATTENTION", "1")][..],
    ] {
        let server = Server::start_env(env);
        assert_eq!(create_from(&server, "tiny", &model, json!({})).0, 200);
        let (status, v) = post(&server, "/api/generate", ask.clone());
        assert_eq!(status, 200, "{env:?}: {v}");
        assert_eq!(v["eval_count"], 6, "{env:?}: {v}");
        let (_, ps) = body(http().get(server.url("/api/ps")).send().unwrap());
        sizes.push(ps["models"][0]["size"].as_u64().unwrap());
    }
    assert!(sizes[1] < sizes[0], "a q8_0 cache is smaller than f16: {sizes:?}");
    assert_eq!(sizes[2], sizes[0], "q4_0 without flash attention falls back to f16: {sizes:?}");
    assert_eq!(sizes[3], sizes[0], "{sizes:?}");
}

/// A model whose heads are not whole 32-element blocks (16 dimensions) cannot have a quantized
/// cache: it loads with f16 instead of failing.
#[test]
fn a_quantized_cache_falls_back_to_f16_where_the_model_cannot_have_it() {
    let ask = json!({"model": "tiny", "prompt": "hi", "stream": false, "options": {"num_predict": 3}});
    let mut sizes = Vec::new();
    for env in [&[][..], &[("OLLAMA_KV_CACHE_TYPE", "q4_0")][..]] {
        let server = Server::start_env(env);
        assert_eq!(create_from(&server, "tiny", &runnable_bytes(7, 2048), json!({})).0, 200);
        let (status, v) = post(&server, "/api/generate", ask.clone());
        assert_eq!(status, 200, "{env:?}: {v}");
        let (_, ps) = body(http().get(server.url("/api/ps")).send().unwrap());
        sizes.push(ps["models"][0]["size"].as_u64().unwrap());
    }
    assert_eq!(sizes[0], sizes[1], "f16 either way: {sizes:?}");
}
