//! Puts llama.cpp's shared libraries and backend modules, as `llama-cpp-sys-2` built them, into
//! one directory beside the binaries: `target/<profile>/lib/corral/`. A binary finds it through
//! its run path (`$ORIGIN/lib/corral`, or `$ORIGIN/../lib/corral` for test binaries in `deps/`
//! and for an installed `bin/` + `lib/` layout), so `target/release/corral` runs in place and
//! after being copied anywhere together with that directory.
//!
//! Beside each library goes `<file>.source`: the identity of the ggml source it was built from
//! (see [`source_id`]). The same identity is compiled into the engine (`CORRAL_GGML_SOURCE`), and
//! the engine refuses a backend module whose identity differs: ggml checks only an API version, and
//! a backend from other source fails later with asserts or wrong output.

use std::path::{Path, PathBuf};
use std::{env, fs};

use sha2::{Digest, Sha256};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Set by llama-cpp-sys-2 (`links = "llama"`) with its `dynamic-backends` feature.
    let backends = PathBuf::from(
        env::var("DEP_LLAMA_BACKENDS_DIR")
            .expect("llama-cpp-sys-2 did not report its backends directory: is its `dynamic-backends` feature on?"),
    );
    let sys_out = backends.parent().expect("backends dir has a parent").to_path_buf();
    check_cpu_variants(&sys_out);
    check_compat_hooks(&sys_out);
    let source = llama_source(&sys_out);
    let id = source_id(&source.join("ggml"));
    println!("cargo:rustc-env=CORRAL_GGML_SOURCE={id}");
    println!("cargo:rustc-env=CORRAL_RPC_PROTO={}", rpc_protocol(&source));

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // target/<profile>/build/<pkg>-<hash>/out → target/<profile>
    let profile_dir = out_dir.ancestors().nth(3).expect("OUT_DIR is deep enough").to_path_buf();
    let dest = profile_dir.join("lib").join("corral");
    fs::create_dir_all(&dest).unwrap_or_else(|e| panic!("create {}: {e}", dest.display()));

    let mut libs = Vec::new();
    for dir in [sys_out.join("lib"), sys_out.join("lib64"), backends.clone()] {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_runtime_library(&name) {
                libs.push(entry.path());
            }
        }
    }
    assert!(
        libs.iter().any(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libggml-cpu"))),
        "no CPU backend modules in {}",
        backends.display()
    );
    for lib in &libs {
        println!("cargo:rerun-if-changed={}", lib.display());
        let name = lib.file_name().unwrap();
        let target = dest.join(name);
        // Copy the file itself (not a link into the build tree), replacing an older copy
        // atomically: a runner may have the old one mapped.
        let tmp = dest.join(format!(".{}.tmp", name.to_string_lossy()));
        fs::copy(lib, &tmp).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
        fs::rename(&tmp, &target).unwrap_or_else(|e| panic!("install {}: {e}", target.display()));
        fs::write(dest.join(format!("{}.source", name.to_string_lossy())), format!("{id}\n")).unwrap();
    }

    // This crate's own test binaries run from target/<profile>/deps.
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/lib/corral:$ORIGIN/../lib/corral");
}

/// The libraries a program needs at run time, by the names it asks for: `libllama.so.0`,
/// `libggml-base.so.0`…, and the backend modules `libggml-<backend>[-<variant>].so`.
fn is_runtime_library(name: &str) -> bool {
    if !name.starts_with("lib") {
        return false;
    }
    // Modules are loaded by file name; linked libraries by their soname (`.so.<major>`).
    let module = name.starts_with("libggml-") && name.ends_with(".so") && !name.starts_with("libggml-base");
    let soname = name.rsplit_once(".so.").is_some_and(|(_, v)| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    module || soname
}

/// The CPU variants were chosen when llama-cpp-sys-2 first configured CMake
/// (`cpu-variants.cmake`, from `CORRAL_CPU_VARIANTS`), and its build script does not configure
/// again when that variable changes: a request that differs from the recorded one would be
/// silently ignored, so it stops the build with what to do instead.
fn check_cpu_variants(sys_out: &Path) {
    println!("cargo:rerun-if-env-changed=CORRAL_CPU_VARIANTS");
    let asked = env::var("CORRAL_CPU_VARIANTS").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "host".into());
    let record = sys_out.join("build").join("corral-cpu-variants.txt");
    let Ok(text) = fs::read_to_string(&record) else {
        // Configured without the include (CMAKE_PROJECT_INCLUDE unset): ggml's full set.
        println!(
            "cargo:warning=no {} (built without cpu-variants.cmake?): every CPU variant was built",
            record.display()
        );
        return;
    };
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_default().to_string();
    let (recorded, built) = (field("request="), field("built="));
    if recorded != asked {
        panic!(
            "llama.cpp was configured with CORRAL_CPU_VARIANTS={recorded} (CPU variants built: {built}), and this build \
             asks for {asked}; its build script does not reconfigure CMake: run `cargo clean -p llama-cpp-sys-2` \
             (add `--release` for a release build) and build again"
        );
    }
}

/// llama.cpp's model loader is built with the hooks in `compat/` (`compat/compat.cmake`), and its
/// build configured by `llama-cpp.cmake`; cargo does not rerun llama-cpp-sys-2's build when only
/// those files change. When the digest
/// recorded at configure time differs from the files here, this brings llama.cpp's build up to
/// date itself (CMake rebuilds what changed and installs it where llama-cpp-sys-2 put it), so a
/// stale translation is never linked.
fn check_compat_hooks(sys_out: &Path) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat");
    let mut digests = Vec::new();
    for name in ["corral-compat.cpp", "corral-compat.h", "compat.cmake", "../llama-cpp.cmake"] {
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        digests.push(hex(&Sha256::digest(&bytes)));
    }
    let want = digests.join(" ");
    let build = sys_out.join("build");
    let record = build.join("corral-compat-sources.txt");
    let recorded = || fs::read_to_string(&record).map(|s| s.trim().to_string());
    match recorded() {
        Ok(built) if built == want => return,
        Ok(_) => {}
        Err(e) => panic!(
            "read {}: {e}: llama.cpp was configured without crates/corral-engine/llama-cpp.cmake \
             (CMAKE_PROJECT_INCLUDE in .cargo/config.toml), or before it carried the GGUF translation hooks: \
             run `cargo clean -p llama-cpp-sys-2` (add `--release` for a release build) and build again",
            record.display()
        ),
    }
    // compat.cmake names these files as configure dependencies: the build reconfigures (which
    // writes the record again), recompiles the loader and the hooks, and installs the libraries.
    let status = std::process::Command::new("cmake")
        .arg("--build")
        .arg(&build)
        .args(["--target", "install"])
        .status()
        .unwrap_or_else(|e| panic!("run cmake --build {}: {e}", build.display()));
    if !status.success() || recorded().ok().as_deref() != Some(want.as_str()) {
        panic!(
            "llama.cpp's build in {} could not be brought up to date with crates/corral-engine/compat/: run \
             `cargo clean -p llama-cpp-sys-2` (add `--release` for a release build) and build again",
            build.display()
        );
    }
}

/// The version of ggml's RPC protocol in this source (`major.minor.patch`, from `ggml-rpc.h`):
/// what `corral rpc` speaks and what runners ask of their peers.
fn rpc_protocol(source: &Path) -> String {
    let header = source.join("ggml/include/ggml-rpc.h");
    let text = fs::read_to_string(&header).unwrap_or_else(|e| panic!("read {}: {e}", header.display()));
    let part = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("#define RPC_PROTO_{name}_VERSION")))
            .and_then(|v| v.trim().parse::<u8>().ok())
            .unwrap_or_else(|| panic!("no RPC_PROTO_{name}_VERSION in {}", header.display()))
    };
    format!("{}.{}.{}", part("MAJOR"), part("MINOR"), part("PATCH"))
}

/// The llama.cpp tree llama-cpp-sys-2 configured CMake with.
fn llama_source(sys_out: &Path) -> PathBuf {
    let cache = sys_out.join("build").join("CMakeCache.txt");
    let text = fs::read_to_string(&cache).unwrap_or_else(|e| panic!("read {}: {e}", cache.display()));
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix("CMAKE_HOME_DIRECTORY:INTERNAL="))
        .unwrap_or_else(|| panic!("no CMAKE_HOME_DIRECTORY in {}", cache.display()));
    PathBuf::from(dir)
}

/// `sha256:<hex>` over the ggml source tree, computed exactly as
/// `(cd <llama.cpp> && find ggml -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum`
/// does, so that `scripts/build-gpu-backend.sh` (no Rust there) writes the same identity.
fn source_id(ggml: &Path) -> String {
    let root = ggml.parent().unwrap();
    let mut files = Vec::new();
    collect_files(ggml, &mut files);
    let mut rel: Vec<(String, PathBuf)> =
        files.into_iter().map(|p| (p.strip_prefix(root).unwrap().to_string_lossy().into_owned(), p)).collect();
    rel.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut listing = Sha256::new();
    for (name, path) in rel {
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        listing.update(format!("{}  {name}\n", hex(&Sha256::digest(&bytes))));
    }
    format!("sha256:{}", hex(&listing.finalize()))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())).flatten() {
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            collect_files(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
