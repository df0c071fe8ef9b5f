//! Issue 30: the scheduler's GPU rules on a real device. Two models share Mesa's software Vulkan
//! device while both fit; once `OLLAMA_GPU_OVERHEAD` leaves room for one, the second evicts the
//! first when it is idle and waits for it when it is busy. Named twice in
//! `GGML_VK_VISIBLE_DEVICES`, the device is two to ggml, each with its own 2 GiB: a model goes
//! whole on the one with the most room, or over both with `OLLAMA_SCHED_SPREAD`. A runner killed
//! on the device is replaced, and the memory it held is not counted twice.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use common::vulkan::{answer, placement, server_on, used_on, vulkan_libraries};
use common::{body, counting, create_from, http, post, process_ended, signal, Server};
use serde_json::{json, Value};

/// A random-weight model with SmolLM2's vocabulary, expected to take about 230 MB: twelve blocks
/// of 256, whose f16 KV cache for 4096 positions in each of four slots is most of it. It fits
/// beside SmolLM2 (583 MB placed) in the 1 GiB the software device offers, and not in what is
/// left of it when 300 MiB more are kept free.
fn create_tiny(server: &Server) {
    let spec = corral_testkit::TinySpec {
        embd: 256,
        layers: 12,
        heads: 4,
        kv_heads: 4,
        ffn: 512,
        context: 4096,
        seed: 30,
        f32: false,
    };
    let (status, v) = create_from(server, "tiny", &corral_testkit::tiny_llama_with_smollm2_tokenizer(&spec), json!({}));
    assert_eq!(status, 200, "{v}");
}

/// A server on the Vulkan libraries with `env`, SmolLM2 and the tiny model.
fn server(libs: &Path, env: &[(&str, &str)]) -> Server {
    let server = server_on(libs, env);
    create_tiny(&server);
    server
}

/// Loads `model` with a short answer.
fn load(server: &Server, model: &str, options: Value) {
    let (status, v) =
        post(server, "/api/generate", json!({"model": model, "prompt": "Hi", "stream": false, "options": options}));
    assert_eq!(status, 200, "{v}");
}

/// `/api/ps`: each loaded model's name, `size` and `size_vram`.
fn loaded(server: &Server) -> Vec<(String, u64, u64)> {
    let (_, ps) = body(http().get(server.url("/api/ps")).send().unwrap());
    let models = ps["models"].as_array().unwrap();
    let mut out: Vec<_> = models
        .iter()
        .map(|m| {
            (m["name"].as_str().unwrap().to_string(), m["size"].as_u64().unwrap(), m["size_vram"].as_u64().unwrap())
        })
        .collect();
    out.sort();
    out
}

fn names(server: &Server) -> Vec<String> {
    loaded(server).into_iter().map(|(n, _, _)| n).collect()
}

fn next_line(reader: &mut BufReader<reqwest::blocking::Response>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line
}

#[test]
fn issue_30_two_models_share_the_device_until_it_is_full_then_the_second_evicts_or_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let libs = vulkan_libraries(tmp.path());

    // Room for both: both stay loaded, each wholly on the device.
    let roomy = server(&libs, &[("GGML_VK_VISIBLE_DEVICES", "0")]);
    load(&roomy, "smollm2", json!({"num_predict": 1}));
    load(&roomy, "tiny", json!({"num_predict": 1}));
    let both = loaded(&roomy);
    eprintln!("sharing the device: {both:?}");
    assert_eq!(both.len(), 2, "{both:?}\n{}", roomy.log());
    assert!(both.iter().all(|(_, size, vram)| vram == size && *size > 0), "{both:?}");
    assert_eq!(used_on(&roomy, "Vulkan0"), both.iter().map(|(_, _, vram)| vram).sum::<u64>());
    roomy.stop();

    // 300 MiB more kept free: about 760 MB of room, SmolLM2's 583 MB and not the tiny model's
    // 230 MB besides. The idle SmolLM2 is evicted for it.
    let small = server(&libs, &[("GGML_VK_VISIBLE_DEVICES", "0"), ("OLLAMA_GPU_OVERHEAD", "314572800")]);
    load(&small, "smollm2", json!({"num_predict": 1}));
    load(&small, "tiny", json!({"num_predict": 1}));
    let now = loaded(&small);
    assert!(matches!(&now[..], [(name, size, vram)] if name == "tiny:latest" && vram == size), "{now:?}");
    assert!(small.log().contains("evicting model to make room"), "{}", small.log());

    // SmolLM2 busy: it evicts the idle tiny model, and then the tiny model waits for it to finish.
    let mut stream = counting(&small, "smollm2");
    let addr = small.url("/api/generate");
    let waiter = std::thread::spawn(move || {
        let resp = http()
            .post(addr)
            .json(&json!({"model": "tiny", "prompt": "Hi", "stream": false, "options": {"num_predict": 1}}))
            .send()
            .unwrap();
        body(resp)
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(!waiter.is_finished(), "the tiny model did not wait");
    assert_eq!(names(&small), ["smollm2:latest"]);
    assert!(next_line(&mut stream).contains("\"done\":false"), "SmolLM2 stopped counting");
    // The count is abandoned: SmolLM2 is idle, and the tiny model takes its place.
    drop(stream);
    let (status, v) = waiter.join().unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(names(&small), ["tiny:latest"]);
}

#[test]
fn issue_30_two_devices_take_a_model_each_or_share_one_with_sched_spread() {
    let tmp = tempfile::tempdir().unwrap();
    let libs = vulkan_libraries(tmp.path());
    let two = [("GGML_VK_VISIBLE_DEVICES", "0,0")];

    // Each model whole on one device: the second on the one with the most room.
    let server = server(&libs, &two);
    assert!(server.log().contains("device=Vulkan1"), "{}", server.log());
    load(&server, "smollm2", json!({"num_predict": 1}));
    let size = placement(&server).0;
    let first = (used_on(&server, "Vulkan0"), used_on(&server, "Vulkan1"));
    assert!(first == (size, 0) || first == (0, size), "SmolLM2 ({size} bytes) on {first:?}");
    load(&server, "tiny", json!({"num_predict": 1}));
    let tiny = loaded(&server).into_iter().find(|(n, _, _)| n == "tiny:latest").unwrap();
    let second = (used_on(&server, "Vulkan0") - first.0, used_on(&server, "Vulkan1") - first.1);
    eprintln!("SmolLM2 on {first:?}, the tiny model on {second:?}");
    assert!((first.0 == 0) == (second.0 != 0) && tiny.1 == tiny.2 && second.0 + second.1 == tiny.2, "{second:?}");

    // `main_gpu` pins a model to the device it names.
    server.ok(&["stop", "smollm2"]);
    server.ok(&["stop", "tiny"]);
    load(&server, "smollm2", json!({"num_predict": 1, "main_gpu": 1}));
    assert_eq!((used_on(&server, "Vulkan0"), used_on(&server, "Vulkan1")), (0, placement(&server).0));
    server.stop();

    // OLLAMA_SCHED_SPREAD: split by layer over both, though it would fit one.
    let spread = server_on(&libs, &[two[0], ("OLLAMA_SCHED_SPREAD", "1")]);
    answer(&spread, json!({"num_predict": 4, "temperature": 0}));
    let (size, vram) = placement(&spread);
    let on = (used_on(&spread, "Vulkan0"), used_on(&spread, "Vulkan1"));
    eprintln!("spread: {on:?} of {size}");
    assert!(on.0 > 0 && on.1 > 0 && on.0 + on.1 == vram && vram == size, "{on:?}, size {size}, size_vram {vram}");
}

#[test]
fn issue_30_a_runner_that_dies_on_the_device_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server_on(&vulkan_libraries(tmp.path()), &[("GGML_VK_VISIBLE_DEVICES", "0")]);
    let stream = counting(&server, "smollm2");
    let before = placement(&server);
    let runners = server.runners();
    assert_eq!(runners.len(), 1, "{runners:?}");
    signal(runners[0], "9");
    // The answer in flight ends with an error, and the runner's memory is given back.
    let rest: Vec<String> = stream.lines().map_while(Result::ok).collect();
    let last = rest.last().cloned().unwrap_or_default();
    assert!(last.contains("\"error\""), "{rest:?}");
    for _ in 0..100 {
        if process_ended(runners[0]) && used_on(&server, "Vulkan0") == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(used_on(&server, "Vulkan0"), 0);

    // The next request loads a new runner, placed as the first was.
    let v = answer(&server, json!({"num_predict": 4, "temperature": 0}));
    assert_eq!(v["eval_count"], 4, "{v}");
    let again = server.runners();
    assert!(again.len() == 1 && again[0] != runners[0], "{runners:?} then {again:?}");
    assert_eq!(placement(&server), before);
    assert_eq!(used_on(&server, "Vulkan0"), before.1);
    assert!(server.ok(&["ps"]).contains("100% GPU"), "{}", server.ok(&["ps"]));
}
