//! Issue 31: what a Kubernetes deployment asks of a replica, taken from the manifests in
//! `deploy/kubernetes/` and asked of a real server: the probes' paths and port, the preloaded
//! models, the metric names and types the inference gateway's endpoint picker reads; and the
//! `Containerfile`, whose build must be the README's own steps.

mod common;

use std::time::{Duration, Instant};

use common::{http, Server};
use serde_yaml::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The documents of a multi-document YAML file under the repository root.
fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the manifests"))
}

/// A probe's path and port number (a named port looked up among the container's ports).
fn probe(container: &Value, which: &str) -> (String, u64) {
    let get = &container[which]["httpGet"];
    let port = match &get["port"] {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(name) => {
            let ports = container["ports"].as_sequence().unwrap();
            let port = ports.iter().find(|p| p["name"] == name.as_str()).unwrap_or_else(|| panic!("no port {name}"));
            port["containerPort"].as_u64().unwrap()
        }
        other => panic!("{which}: port {other:?}"),
    };
    (get["path"].as_str().unwrap().to_string(), port)
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"].as_sequence()?.iter().find(|e| e["name"] == name).and_then(|e| e["value"].as_str())
}

#[test]
fn issue_31_the_manifests_probes_answer_as_they_expect_on_a_real_server() {
    let docs = documents("deploy/kubernetes/corral.yaml");
    let deployment = kind(&docs, "Deployment", "corral");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let (live, live_port) = probe(container, "livenessProbe");
    let (ready, ready_port) = probe(container, "readinessProbe");
    let (startup, _) = probe(container, "startupProbe");
    assert_eq!((live.as_str(), ready.as_str(), startup.as_str()), ("/health", "/ready", "/health"));
    let listen = env(container, "OLLAMA_HOST").unwrap();
    assert!(listen.ends_with(&format!(":{live_port}")) && live_port == ready_port, "{listen}");
    assert!(env(container, "CORRAL_PRELOAD").is_some());
    // The gateway sends its requests to the pods the pool selects, on the pool's port.
    let pool = kind(&documents("deploy/kubernetes/inference-gateway.yaml"), "InferencePool", "corral").clone();
    assert_eq!(pool["spec"]["targetPorts"][0]["number"].as_u64(), Some(live_port));
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in pool["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&labels[k], v, "the pool selects the pods by {k:?}");
    }

    // A replica whose models directory has SmolLM2, told to preload it, with keys set (the
    // probes carry none). Its load is made slow on purpose: it is told of an RPC server that
    // takes connections and never answers, which each runner waits for (3 s) before leaving it
    // out.
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let first = Server::start_in(&models, &[]);
    let modelfile = dir.path().join("Modelfile");
    std::fs::write(&modelfile, format!("FROM {}\n", corral_testkit::smollm2().display())).unwrap();
    first.ok(&["create", "smollm2", "-f", modelfile.to_str().unwrap()]);
    first.stop();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_at = silent.local_addr().unwrap().to_string();
    let replica = Server::start_in(
        &models,
        &[("CORRAL_PRELOAD", "smollm2"), ("CORRAL_API_KEYS", "k"), ("CORRAL_RPC_SERVERS", &silent_at)],
    );
    let get = |path: &str| http().get(replica.url(path)).send().unwrap();
    assert_eq!(get(&live).status(), 200);
    let loading = get(&ready);
    assert_eq!(loading.status(), 503);
    let v: serde_json::Value = loading.json().unwrap();
    assert_eq!(v, serde_json::json!({"status": "loading", "loading": ["smollm2"]}));
    let start = Instant::now();
    while get(&ready).status() != 200 {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", replica.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(replica.ok(&["ps"]).contains("smollm2:latest"), "{}", replica.ok(&["ps"]));
    assert!(replica.log().contains("preloaded models are loaded: ready"), "{}", replica.log());

    // The endpoint picker's series, each with its type: it reads gauges only.
    let metrics = http().get(replica.url("/metrics")).bearer_auth("k").send().unwrap().text().unwrap();
    for name in [
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:lora_requests_info",
        "vllm:cache_config_info",
    ] {
        assert!(metrics.contains(&format!("# TYPE {name} gauge\n{name}")), "{name} in\n{metrics}");
    }
    replica.stop();

    // A model that is not there: the replica never turns ready, and says why.
    let broken = Server::start_in(&models, &[("CORRAL_PRELOAD", "smollm2,absent")]);
    let start = Instant::now();
    loop {
        let resp = http().get(broken.url(&ready)).send().unwrap();
        assert_eq!(resp.status(), 503);
        let v: serde_json::Value = resp.json().unwrap();
        if v["status"] == "failed" {
            assert_eq!((v["model"].as_str(), v["error"].as_str()), (Some("absent"), Some("model 'absent' not found")));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn issue_31_the_containerfile_builds_with_the_readmes_own_steps() {
    let demo = std::fs::read_to_string(format!("{ROOT}/scripts/demo.sh")).unwrap();
    let containerfile = std::fs::read_to_string(format!("{ROOT}/Containerfile")).unwrap();
    let runs: Vec<&str> = containerfile.lines().filter_map(|l| l.strip_prefix("RUN ")).collect();
    // The demo's setup and build lines, in the same order.
    let steps: Vec<&str> =
        demo.lines().filter(|l| l.starts_with("scripts/setup.sh") || l.starts_with("cargo build")).collect();
    assert_eq!(steps, ["scripts/setup.sh", "cargo build --release --locked"]);
    let setup = runs.iter().position(|r| *r == steps[0]).expect("the Containerfile runs scripts/setup.sh");
    let build = runs.iter().position(|r| r.ends_with(steps[1])).expect("the Containerfile builds as the demo does");
    assert!(setup < build, "{runs:?}");
    // The binary finds its libraries in ../lib/corral.
    assert!(containerfile.contains("COPY --from=build /out/bin/corral /usr/local/bin/corral"));
    assert!(containerfile.contains("COPY --from=build /out/lib/corral /usr/local/lib/corral"));
    assert!(containerfile.contains("USER 10001:10001"));
}
