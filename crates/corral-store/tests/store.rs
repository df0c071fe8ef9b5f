//! The store against a real directory: Ollama's layout byte for byte, verified blobs, safe
//! concurrent create/delete, pruning, and refusal of bad input without side effects.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use corral_store::{CreateError, CreateSpec, ModelSource, Store, StoreError, StoreOptions};
use corral_testkit::{tiny_llama, tree, TinySpec};
use corral_types::api::Message;
use corral_types::{Digest, Manifest, ModelName, Overlay};
use serde_json::{json, Value};

fn name(s: &str) -> ModelName {
    ModelName::parse(s).unwrap()
}

fn spec(model: &str, source: ModelSource) -> CreateSpec {
    CreateSpec { name: name(model), source, adapters: vec![], draft: vec![], overlay: Overlay::default() }
}

fn tiny_bytes() -> Vec<u8> {
    tiny_llama(&TinySpec { embd: 32, ffn: 64, ..Default::default() }, None)
}

/// Uploads the tiny GGUF and returns a `files` source for it (unpinned: fine where nothing runs
/// concurrently).
fn upload(store: &Store, bytes: &[u8]) -> ModelSource {
    upload_pinned(store, bytes).0
}

/// Uploads and keeps the blob pinned until the returned guard is dropped.
fn upload_pinned(store: &Store, bytes: &[u8]) -> (ModelSource, corral_store::Committed) {
    let c = store.import_blob(bytes, None).unwrap();
    (ModelSource::Files(vec![("model.gguf".into(), c.digest)]), c)
}

fn create(store: &Store, s: CreateSpec) -> Vec<String> {
    let mut statuses = Vec::new();
    store.prepare_create(s).unwrap().commit(&mut |st| statuses.push(st)).unwrap();
    statuses
}

/// Every manifest's blobs exist. Safe to call while other threads create and delete: a manifest
/// listed here and deleted before its blobs are looked at may rightly have lost them, so a missing
/// blob counts only if the very same manifest (same digest) is still stored afterwards.
fn every_manifest_is_complete(store: &Store) {
    for m in store.list().unwrap() {
        for l in m.manifest.blobs() {
            if store.has_blob(&l.digest) {
                continue;
            }
            let still_stored = store.list().unwrap().iter().any(|n| n.name == m.name && n.digest == m.digest);
            assert!(!still_stored, "{} points at missing {}", m.name, l.digest);
        }
    }
}

#[test]
fn layout_matches_ollama() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let gguf = tiny_bytes();
    let mut s = spec("tiny", upload(&store, &gguf));
    s.overlay.system = Some("You are terse.".into());
    s.overlay.template = Some("{{ .Prompt }}".into());
    s.overlay.parameters = json!({"temperature": 0.5, "stop": ["<|im_end|>"]}).as_object().unwrap().clone();
    s.overlay.messages = vec![Message::new("user", "hi"), Message::new("assistant", "hello")];
    s.overlay.license = vec!["MIT".into()];
    let statuses = create(&store, s);
    assert_eq!(statuses.first().unwrap(), "parsing GGUF");
    assert_eq!(&statuses[statuses.len() - 2..], ["writing manifest", "success"]);
    assert!(statuses.iter().filter(|s| s.starts_with("creating new layer sha256:")).count() == 5);

    let path = dir.path().join("manifests/registry.ollama.ai/library/tiny/latest");
    let bytes = fs::read(&path).unwrap();
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(m["config"]["mediaType"], "application/vnd.docker.container.image.v1+json");
    let types: Vec<&str> = m["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "application/vnd.ollama.image.model",
            "application/vnd.ollama.image.template",
            "application/vnd.ollama.image.system",
            "application/vnd.ollama.image.license",
            "application/vnd.ollama.image.params",
            "application/vnd.ollama.image.messages",
        ]
    );
    // Compact JSON with a trailing newline, as Go's json.Encoder writes it.
    assert!(bytes.ends_with(b"}\n") && !bytes.contains(&b' '));
    // Each layer is a blob named after its digest, holding exactly that content.
    for l in m["layers"].as_array().unwrap().iter().chain([&m["config"]]) {
        let d = Digest::parse(l["digest"].as_str().unwrap()).unwrap();
        let blob = dir.path().join("blobs").join(format!("sha256-{}", d.hex()));
        let content = fs::read(&blob).unwrap();
        assert_eq!(Digest::of(&content), d);
        assert_eq!(content.len() as u64, l["size"].as_u64().unwrap());
    }
    let weights = &m["layers"][0];
    assert_eq!(weights["digest"], Digest::of(&gguf).to_string());
    let config: Value = serde_json::from_slice(
        &fs::read(
            dir.path().join("blobs").join(Digest::parse(m["config"]["digest"].as_str().unwrap()).unwrap().file_name()),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        config,
        json!({"model_format": "gguf", "model_family": "llama", "model_families": ["llama"], "model_type": "21K",
               "file_type": "Q8_0", "architecture": "amd64", "os": "linux"})
    );
    let params = store.load_model(&name("tiny")).unwrap().parameters;
    assert_eq!(Value::Object(params), json!({"stop": ["<|im_end|>"], "temperature": 0.5}));
    // Nothing but blobs and the manifest: no temp files left behind.
    let files = tree(dir.path());
    assert_eq!(files.len(), 1 + 1 + 6);
    assert!(files.iter().all(|f| f.starts_with("blobs/sha256-") || f.starts_with("manifests/")), "{files:?}");
}

#[test]
fn mismatched_blob_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let before = tree(dir.path());
    let claimed = Digest::of(b"something else");
    match store.import_blob(&b"payload"[..], Some(&claimed)) {
        Err(StoreError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, Digest::of(b"payload"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn names_resolve_case_insensitively_and_keep_their_case() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let src = upload(&store, &tiny_bytes());
    create(&store, spec("Team/MyModel:V1", src.clone()));
    let found = store.resolve(&name("team/mymodel:v1")).unwrap();
    assert_eq!(found.to_string(), "registry.ollama.ai/Team/MyModel:V1");
    // Re-creating under another casing overwrites the same manifest.
    create(&store, spec("TEAM/MYMODEL:v1", src));
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(dir.path().join("manifests/registry.ollama.ai/Team/MyModel/V1").is_file());
}

#[test]
fn copy_shares_blobs_and_delete_keeps_shared_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut s = spec("a", upload(&store, &tiny_bytes()));
    s.overlay.system = Some("sys".into());
    create(&store, s);
    store.copy(&name("a"), &name("b:copy")).unwrap();
    let a = store.read_manifest(&name("a")).unwrap();
    let b = store.read_manifest(&name("b:copy")).unwrap();
    assert_eq!(a.digest, b.digest, "copy is byte for byte");
    let blobs = tree(&dir.path().join("blobs"));

    store.delete(&name("a")).unwrap();
    assert_eq!(tree(&dir.path().join("blobs")), blobs, "b still needs every blob");
    assert!(!dir.path().join("manifests/registry.ollama.ai/library/a").exists(), "empty dirs removed");
    store.delete(&name("b:copy")).unwrap();
    assert!(tree(&dir.path().join("blobs")).is_empty());
    assert!(matches!(store.delete(&name("b:copy")), Err(StoreError::ModelNotFound(_))));
    assert!(matches!(store.copy(&name("nope"), &name("x")), Err(StoreError::ModelNotFound(_))));
}

#[test]
fn create_from_model_inherits_and_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut s = spec("base", upload(&store, &tiny_bytes()));
    s.overlay.system = Some("base system".into());
    s.overlay.parameters = json!({"temperature": 0.1, "top_k": 5}).as_object().unwrap().clone();
    s.overlay.license = vec!["L1".into()];
    create(&store, s);
    let mut s = spec("child", ModelSource::Model(name("BASE")));
    s.overlay.system = Some("child system".into());
    s.overlay.parameters = json!({"temperature": 0.9}).as_object().unwrap().clone();
    s.overlay.license = vec!["L2".into()];
    create(&store, s);
    let child = store.load_model(&name("child")).unwrap();
    assert_eq!(child.system.as_deref(), Some("child system"));
    assert_eq!(Value::Object(child.parameters), json!({"temperature": 0.9, "top_k": 5}));
    assert_eq!(child.license, vec!["L1", "L2"]);
    assert_eq!(child.parent_model, "base:latest");
    assert_eq!(child.config.model_family, "llama");
    assert_eq!(child.config.model_families, Some(vec!["llama".to_string()]));
}

#[test]
fn overwriting_releases_old_layers_unless_noprune() {
    for noprune in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { noprune }).unwrap();
        let src = upload(&store, &tiny_bytes());
        let mut s = spec("m", src.clone());
        s.overlay.system = Some("first".into());
        create(&store, s);
        let mut s = spec("m", src);
        s.overlay.system = Some("second".into());
        create(&store, s);
        assert_eq!(store.has_blob(&Digest::of(b"first")), noprune);
        assert!(store.has_blob(&Digest::of(b"second")));
        every_manifest_is_complete(&store);
    }
}

/// Creates and deletes of models sharing one weights blob, racing on four threads. Without the
/// pin table a delete could collect the shared blob between a create's checks and its manifest
/// write, and the create would fail (or, without the final existence check, leave a manifest
/// pointing at nothing).
#[test]
fn concurrent_create_and_delete_never_lose_a_referenced_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let gguf = tiny_bytes();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let store = store.clone();
            let gguf = &gguf;
            scope.spawn(move || {
                for i in 0..25 {
                    // The upload's pin is held until the create has pinned the blob itself.
                    let (source, _pin) = upload_pinned(&store, gguf);
                    let mut s = spec(&format!("m{t}"), source);
                    s.overlay.system = Some(format!("thread {t} round {i}"));
                    let prepared = store.prepare_create(s).unwrap();
                    prepared.commit(&mut |_| {}).unwrap();
                    match store.delete(&name(&format!("m{}", (t + 1) % 4))) {
                        Ok(()) | Err(StoreError::ModelNotFound(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                    every_manifest_is_complete(&store);
                }
            });
        }
    });
    every_manifest_is_complete(&store);
    let leftovers: Vec<_> = tree(&dir.path().join("blobs")).into_iter().filter(|f| f.starts_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn age(path: &Path, by: Duration) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

#[test]
fn prune_removes_only_old_unreferenced_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    create(&store, spec("kept", upload(&store, &tiny_bytes())));
    let old_orphan = store.write_blob(b"old orphan").unwrap().digest;
    let new_orphan = store.write_blob(b"new orphan").unwrap().digest;
    let blobs = dir.path().join("blobs");
    fs::write(blobs.join(".tmp-crashed"), b"half a blob").unwrap();
    let legacy = Digest::of(b"legacy name");
    fs::write(blobs.join(format!("sha256:{}", legacy.hex())), b"legacy name").unwrap();
    fs::create_dir_all(dir.path().join("manifests/h/n/empty")).unwrap();
    for f in fs::read_dir(&blobs).unwrap().flatten() {
        age(&f.path(), Duration::from_secs(7200));
    }
    age(&store.blob_path(&new_orphan), Duration::ZERO);

    let report = store.prune(Duration::from_secs(3600)).unwrap();
    assert!(!store.has_blob(&old_orphan));
    assert!(store.has_blob(&new_orphan), "inside the grace period");
    assert!(!blobs.join(".tmp-crashed").exists());
    assert_eq!(report.renamed, 1);
    assert!(!store.has_blob(&legacy), "renamed, then pruned as unreferenced");
    assert!(!dir.path().join("manifests/h").exists());
    every_manifest_is_complete(&store);
    assert_eq!(report.removed_blobs, 2);
}

#[test]
fn prune_skips_blobs_when_a_manifest_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let orphan = store.write_blob(b"maybe referenced").unwrap().digest;
    age(&store.blob_path(&orphan), Duration::from_secs(7200));
    let bad = dir.path().join("manifests/registry.ollama.ai/library/broken/latest");
    fs::create_dir_all(bad.parent().unwrap()).unwrap();
    fs::write(&bad, b"{not json").unwrap();
    let report = store.prune(Duration::from_secs(3600)).unwrap();
    assert!(report.skipped_unreadable);
    assert!(store.has_blob(&orphan));
    // The broken manifest does not hide the others from `list`.
    assert!(store.list().unwrap().is_empty());
}

/// A store exactly as `ollama pull` writes it (config with `rootfs`, a `from` on the weights).
#[test]
fn reads_a_store_written_by_ollama() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    fs::create_dir_all(&blobs).unwrap();
    let gguf = tiny_bytes();
    let config = br#"{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"38K","file_type":"Q8_0","architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let template = b"{{ .Prompt }}";
    let params = br#"{"stop":["<|eot_id|>"]}"#;
    for b in [&gguf[..], config, template, params] {
        fs::write(blobs.join(Digest::of(b).file_name()), b).unwrap();
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"{}","size":{},"from":"registry.ollama.ai/library/llama3.2:latest"}},{{"mediaType":"application/vnd.ollama.image.template","digest":"{}","size":{}}},{{"mediaType":"application/vnd.ollama.image.params","digest":"{}","size":{}}}]}}"#,
        Digest::of(config),
        config.len(),
        Digest::of(&gguf),
        gguf.len(),
        Digest::of(template),
        template.len(),
        Digest::of(params),
        params.len()
    );
    let mpath = dir.path().join("manifests/registry.ollama.ai/library/llama3.2/1b");
    fs::create_dir_all(mpath.parent().unwrap()).unwrap();
    fs::write(&mpath, &manifest).unwrap();

    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name.display_shortest(), "llama3.2:1b");
    assert_eq!(listed[0].digest, Digest::of(manifest.as_bytes()));
    let m = store.load_model(&name("llama3.2:1b")).unwrap();
    assert_eq!(m.template.as_deref(), Some("{{ .Prompt }}"));
    assert_eq!(m.parent_model, "registry.ollama.ai/library/llama3.2:latest");
    assert_eq!(m.config.file_type, "Q8_0");
    // Pruning keeps everything this manifest references.
    for f in fs::read_dir(&blobs).unwrap().flatten() {
        age(&f.path(), Duration::from_secs(7200));
    }
    assert_eq!(store.prune(Duration::from_secs(3600)).unwrap().removed_blobs, 0);
    let _: Manifest = serde_json::from_slice(&fs::read(&mpath).unwrap()).unwrap();
}

#[test]
fn bad_create_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let good = store.import_blob(&tiny_bytes()[..], None).unwrap().digest;
    let mut truncated = tiny_bytes();
    truncated.truncate(5000);
    let truncated = store.import_blob(&truncated[..], None).unwrap().digest;
    let text = store.write_blob(b"not a model").unwrap().digest;
    let before = tree(dir.path());

    let err = |s: CreateSpec| store.prepare_create(s).unwrap_err();
    let files = |f: &str, d: Digest| ModelSource::Files(vec![(f.into(), d)]);
    assert!(
        matches!(err(spec("x", ModelSource::Model(name("missing")))), CreateError::BaseNotFound(n) if n == "missing:latest")
    );
    let absent = Digest::of(b"never uploaded");
    assert!(matches!(err(spec("x", files("m.gguf", absent))), CreateError::BlobNotFound(d) if d == absent));
    assert!(matches!(err(spec("x", files("../m.gguf", good))), CreateError::BadPath(_)));
    assert!(matches!(err(spec("x", files("/etc/m.gguf", good))), CreateError::BadPath(_)));
    let e = err(spec("x", files("model.gguf", truncated)));
    assert!(matches!(&e, CreateError::InvalidGguf { .. }), "{e}");
    assert!(e.to_string().starts_with("model.gguf: invalid GGUF file: "), "{e}");
    let e = err(spec("x", files("weights.safetensors", text)));
    assert!(e.to_string().contains("is not a GGUF file"), "{e}");
    let mut s = spec("x", files("m.gguf", good));
    s.adapters = vec![("lora.gguf".into(), good)];
    assert_eq!(err(s).to_string(), "lora.gguf is not a GGUF LoRA adapter");
    assert!(matches!(err(spec("x", ModelSource::Files(vec![]))), CreateError::Unsupported(_)));
    assert_eq!(tree(dir.path()), before);
}

/// Regression: between `POST /api/blobs` and `POST /api/create` a blob is referenced by nothing.
/// A delete of another model that shared it used to collect it, and the create then failed with
/// `blob not found`. A lease keeps it for the gap; the create that references it ends the lease.
#[test]
fn leased_blob_survives_delete_of_its_last_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let gguf = tiny_bytes();
    let weights = Digest::of(&gguf);
    let files = || ModelSource::Files(vec![("m.gguf".into(), weights)]);
    create(&store, spec("a", upload(&store, &gguf)));
    store.lease(&weights, Duration::from_secs(60));
    store.delete(&name("a")).unwrap();
    assert!(store.has_blob(&weights), "leased");

    // Two clients uploaded it; the first create consumes one lease, the second is still covered.
    store.lease(&weights, Duration::from_secs(60));
    create(&store, spec("b", files()));
    store.delete(&name("b")).unwrap();
    assert!(store.has_blob(&weights), "the second upload's lease remains");
    // The second create consumes the last lease, so the next delete reclaims the space.
    create(&store, spec("b", files()));
    store.delete(&name("b")).unwrap();
    assert!(!store.has_blob(&weights), "no lease left");

    // An expired lease protects nothing.
    create(&store, spec("c", upload(&store, &gguf)));
    store.lease(&weights, Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(200));
    store.delete(&name("c")).unwrap();
    assert!(!store.has_blob(&weights), "lease expired");
}

/// Issue 13: a write cut short by `kill -9` leaves a temp file named after its writer's pid; the
/// next start removes it at once (the writer is gone), young as it is, in blobs and manifests
/// alike, and leaves a live writer's alone.
#[test]
fn temp_files_of_a_dead_writer_are_removed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    create(&store, spec("kept", upload(&store, &tiny_bytes())));
    // A pid that is not running: past the kernel's pid_max.
    let dead = 4_194_305 + 7;
    let blobs = dir.path().join("blobs");
    let manifest_dir = dir.path().join("manifests/registry.ollama.ai/library/kept");
    fs::write(blobs.join(format!(".tmp-{dead}-abc")), b"half a blob").unwrap();
    fs::write(manifest_dir.join(format!(".tmp-{dead}-def")), b"{").unwrap();
    let live = format!(".tmp-{}-ghi", std::process::id());
    let parent = format!(".tmp-{}-jkl", std::os::unix::process::parent_id());
    fs::write(blobs.join(&live), b"ours, in progress").unwrap();
    fs::write(blobs.join(&parent), b"a live writer's").unwrap();
    let report = store.prune(Duration::from_secs(3600)).unwrap();
    assert_eq!(report.removed_other, 2, "{report:?}");
    assert!(!blobs.join(format!(".tmp-{dead}-abc")).exists());
    assert!(!manifest_dir.join(format!(".tmp-{dead}-def")).exists());
    assert!(blobs.join(&live).exists() && blobs.join(&parent).exists());
    every_manifest_is_complete(&store);
}

/// Issue 29: a vision model is its weights plus a projector (two GGUF files), the projector kept
/// as the `projector` layer; one made for a model of another width is refused at create, naming
/// both widths, with nothing stored.
#[test]
fn issue_29_a_projector_must_fit_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let model = store.import_blob(&tiny_bytes()[..], None).unwrap().digest;
    let fits = store.import_blob(&corral_testkit::projector::tiny_vision_projector(32, 1)[..], None).unwrap().digest;
    let wide = store.import_blob(&corral_testkit::projector::tiny_vision_projector(576, 1)[..], None).unwrap().digest;
    let files = |projector| ModelSource::Files(vec![("m.gguf".into(), model), ("mmproj.gguf".into(), projector)]);

    let before = tree(dir.path());
    let e = store.prepare_create(spec("vlm", files(wide))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "projector mmproj.gguf does not fit the model: its embeddings are 576 wide and the model's are 32: it was made for another model"
    );
    assert_eq!(tree(dir.path()), before);

    create(&store, spec("vlm", files(fits)));
    let m = store.load_model(&name("vlm")).unwrap();
    assert_eq!(m.projector_paths.len(), 1);
    assert!(m.model_path.is_some());
}

/// Issue 29: a projector that frames images with special tokens the model lacks (Idefics3's
/// `<fake_token_around_image>`) would make llama.cpp abort the runner at the first image: it is
/// refused at create.
#[test]
fn issue_29_a_projector_needing_tokens_the_model_lacks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let model = store.import_blob(&tiny_bytes()[..], None).unwrap().digest;
    let mut g = corral_gguf::read_bytes(&corral_testkit::projector::tiny_vision_projector(32, 1)).unwrap();
    let mut w = corral_gguf::GgufWriter::new();
    for (k, v) in &g.metadata {
        let v = if k == "clip.projector_type" { corral_gguf::MetaValue::String("idefics3".into()) } else { v.clone() };
        w.set(k, v);
    }
    g.tensors.clear();
    let idefics = store.import_blob(&w.to_bytes()[..], None).unwrap().digest;
    let files = ModelSource::Files(vec![("m.gguf".into(), model), ("mmproj.gguf".into(), idefics)]);
    let e = store.prepare_create(spec("vlm", files)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "projector mmproj.gguf does not fit the model: its images are framed with the token <fake_token_around_image>, which the model's vocabulary does not have"
    );
}
