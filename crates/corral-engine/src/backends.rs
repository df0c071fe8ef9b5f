//! llama.cpp's backends, loaded at run time from the library directory.
//!
//! The build puts every CPU variant of ggml's CPU backend (`libggml-cpu-<variant>.so`: x64,
//! haswell, skylakex, zen4…) in one directory beside the binary; GPU backends
//! (`libggml-cuda.so`…), built separately, are dropped into the same directory. At start a process
//! loads, once, before llama.cpp is initialised:
//!
//! - the CPU variant that scores highest on the running CPU (each module's own
//!   `ggml_backend_score`) among those whose instructions the OS lets this process run (so a CPU
//!   that reports AVX-512 the kernel does not enable gets a variant without it, not "Illegal
//!   instruction"), never the AMX one, whose kernels fault in this ggml (see `os_state`);
//! - every other backend module.
//!
//! A module is loaded only if `<module>.source` beside it names the ggml source this binary was
//! built from ([`SOURCE`]). ggml checks nothing but an API version, and a backend built from other
//! source fails later with asserts or wrong output, so such a module is refused with a message
//! and the process runs on what remains (the CPU).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use corral_types::runner::{Backends, DeviceInfo, DeviceKind, DevicePolicy};

/// Identity of the ggml source this binary was built from (`sha256:` of the source tree, see
/// `build.rs`).
pub const SOURCE: &str = env!("CORRAL_GGML_SOURCE");

/// The library directory when none is configured: `lib/corral` beside the executable, or
/// `../lib/corral` (test binaries in `target/*/deps`, an installed `bin/` + `lib/` layout). The
/// executable's run path names the same two places for the libraries it links.
pub fn default_library_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("lib/corral"), dir.join("../lib/corral")].into_iter().find(|d| d.is_dir())
}

/// What [`load`] was told to leave out of [`devices`] (the first call decides).
static POLICY: OnceLock<DevicePolicy> = OnceLock::new();

/// Loads the backends from `dir`, leaving out the CPU variants named in `skip` and what `policy`
/// rules out (the first call decides; later calls return its outcome).
pub fn load(dir: Option<&Path>, skip: &[String], policy: DevicePolicy) -> Result<&'static Backends, String> {
    static LOADED: OnceLock<Result<Backends, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let policy = *POLICY.get_or_init(|| policy);
            let dir = match dir {
                Some(d) => d.to_path_buf(),
                None => default_library_dir().ok_or_else(|| {
                    "llama.cpp's library directory was not found beside the executable (lib/corral); \
                     set CORRAL_LIBRARY_PATH"
                        .to_string()
                })?,
            };
            load_from(&dir, skip, policy)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A backend module in the directory.
struct Module {
    path: PathBuf,
    /// `cpu-zen4`, `cuda`…: the file name between `libggml-` and `.so`.
    name: String,
}

impl Module {
    fn cpu_variant(&self) -> Option<&str> {
        if self.name == "cpu" {
            return Some("cpu");
        }
        self.name.strip_prefix("cpu-")
    }
}

/// Why a module may not be loaded: its recorded source is missing or another one.
pub fn check_source(module: &Path, expected: &str) -> Result<(), String> {
    let record = PathBuf::from(format!("{}.source", module.display()));
    match std::fs::read_to_string(&record) {
        Err(_) => Err(format!(
            "{} has no {} recording the llama.cpp source it was built from; build it with \
             scripts/build-gpu-backend.sh from this build's source",
            module.display(),
            record.display()
        )),
        Ok(text) if text.trim() == expected => Ok(()),
        Ok(text) => Err(format!(
            "{} was built from other llama.cpp source ({}) than this build of Corral ({expected}); \
             rebuild it with scripts/build-gpu-backend.sh from this build's source",
            module.display(),
            text.trim()
        )),
    }
}

/// Backend modules in `dir`, sorted by name.
fn modules(dir: &Path) -> Result<Vec<Module>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read the library directory {}: {e}", dir.display()))?;
    let mut found: Vec<Module> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let name = file.strip_prefix("libggml-")?.strip_suffix(".so")?;
            (name != "base").then(|| Module { path: e.path(), name: name.to_string() })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn load_from(dir: &Path, skip: &[String], policy: DevicePolicy) -> Result<Backends, String> {
    let mut backends =
        Backends { library_dir: dir.display().to_string(), source: SOURCE.to_string(), ..Default::default() };
    let mut cpu = Vec::new();
    for module in modules(dir)? {
        if module.name == "vulkan" && !policy.vulkan {
            backends.skipped.push(format!("{}: Vulkan turned off (OLLAMA_VULKAN=false)", module.path.display()));
            continue;
        }
        if let Err(why) = check_source(&module.path, SOURCE) {
            backends.refused.push(why);
            continue;
        }
        if let Some(variant) = module.cpu_variant() {
            if skip.iter().any(|s| s == variant) {
                backends.skipped.push(format!(
                    "{}: skipped after a runner using it died of an illegal instruction",
                    module.path.display()
                ));
            } else {
                cpu.push(module);
            }
            continue;
        }
        // Open it first to get the loader's own message (a missing CUDA runtime, say): ggml's
        // loader only logs it.
        // SAFETY: loading a shared library runs its initialisers; the module's recorded source is
        // this build's, so it is a ggml backend built from the same tree.
        match unsafe { libloading::Library::new(&module.path) } {
            // Kept open: GPU runtimes do not all survive being unloaded and loaded again.
            Ok(lib) => std::mem::forget(lib),
            Err(e) => {
                backends.refused.push(format!("{} could not be loaded: {e}", module.path.display()));
                continue;
            }
        }
        if register(&module.path) {
            // The RPC module has no device of its own until peers are added (`rpc::connect`).
            if module.name != "rpc" {
                backends.gpu_backends.push(module.name.clone());
            }
        } else {
            backends.refused.push(format!(
                "{} did not register with ggml (no supported device, or its runtime is missing)",
                module.path.display()
            ));
        }
    }

    let best = best_cpu_variant(&cpu, &mut backends.refused, &mut backends.skipped);
    let Some(best) = best else {
        return Err(format!(
            "no usable CPU backend in {} (expected libggml-cpu-<variant>.so built with this binary){}",
            dir.display(),
            if backends.refused.is_empty() { String::new() } else { format!(": {}", backends.refused.join("; ")) }
        ));
    };
    if !register(&best.path) {
        return Err(format!("the CPU backend {} did not register with ggml", best.path.display()));
    }
    backends.cpu_variant = best.cpu_variant().map(String::from);
    backends.devices = devices();
    for dropped in all_devices().iter().filter(|d| !policy.allows(d)) {
        backends.skipped.push(format!(
            "{} ({}): integrated GPU dropped; to use it, set OLLAMA_IGPU_ENABLE=1",
            dropped.id, dropped.description
        ));
    }
    Ok(backends)
}

/// The CPU module scoring highest on this machine (0 means "cannot run here"), among those whose
/// instructions the operating system lets this process use.
fn best_cpu_variant<'m>(cpu: &'m [Module], refused: &mut Vec<String>, skipped: &mut Vec<String>) -> Option<&'m Module> {
    let mut best: Option<(i32, &Module)> = None;
    for module in cpu {
        match os_state::allows(module.cpu_variant().unwrap_or_default()) {
            Ok(()) => {}
            // The CPU does not report it: its score says so too.
            Err(None) => continue,
            Err(Some(why)) => {
                skipped.push(format!("{}: {why}", module.path.display()));
                continue;
            }
        }
        // SAFETY: as above; the score function only reads CPU feature flags.
        let score = unsafe {
            let lib = match libloading::Library::new(&module.path) {
                Ok(l) => l,
                Err(e) => {
                    refused.push(format!("{} could not be loaded: {e}", module.path.display()));
                    continue;
                }
            };
            match lib.get::<unsafe extern "C" fn() -> i32>(b"ggml_backend_score\0") {
                Ok(f) => f(),
                // A module built without variants has no score: usable anywhere it loads.
                Err(_) => 1,
            }
        };
        if score > 0 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, module));
        }
    }
    best.map(|(_, m)| m)
}

fn register(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: a valid C string; ggml keeps the library open for the life of the process.
    !unsafe { llama_cpp_sys_2::ggml_backend_load(c.as_ptr()) }.is_null()
}

fn text(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: ggml returns NUL-terminated strings owned by the device, alive for the process.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The devices registered with ggml that runners may use (integrated GPUs as [`DevicePolicy`]
/// rules), with their memory now.
pub fn devices() -> Vec<DeviceInfo> {
    let policy = POLICY.get().copied().unwrap_or_default();
    all_devices().into_iter().filter(|d| policy.allows(d)).collect()
}

/// Every device registered with ggml, with its memory now.
fn all_devices() -> Vec<DeviceInfo> {
    use llama_cpp_sys_2 as sys;
    // SAFETY: ggml's device registry is initialised by the loads above; indices are in range.
    unsafe {
        (0..sys::ggml_backend_dev_count())
            .map(|i| {
                let dev = sys::ggml_backend_dev_get(i);
                let (mut free, mut total) = (0usize, 0usize);
                sys::ggml_backend_dev_memory(dev, &mut free, &mut total);
                let kind = match sys::ggml_backend_dev_type(dev) {
                    sys::GGML_BACKEND_DEVICE_TYPE_GPU => DeviceKind::Gpu,
                    sys::GGML_BACKEND_DEVICE_TYPE_IGPU => DeviceKind::IntegratedGpu,
                    sys::GGML_BACKEND_DEVICE_TYPE_CPU => DeviceKind::Cpu,
                    _ => DeviceKind::Accelerator,
                };
                DeviceInfo {
                    id: text(sys::ggml_backend_dev_name(dev)),
                    description: text(sys::ggml_backend_dev_description(dev)),
                    kind,
                    total_bytes: total as u64,
                    free_bytes: free as u64,
                }
            })
            .collect()
    }
}

/// What the operating system enables, beyond what the CPU reports.
///
/// ggml scores a variant by the CPU's feature flags alone. But AVX and AVX-512 registers are usable
/// only when the OS saves their state (XCR0): a CPU (or a virtual machine's) that reports AVX-512
/// without that kills the runner with "Illegal instruction" at its first matrix product. So each
/// variant's needs are checked here first, by the register state its instruction sets require;
/// the AMX variant is refused outright (see `AMX_BROKEN`).
mod os_state {
    /// XCR0 bits: SSE and AVX (YMM) state; AVX-512 opmask and upper ZMM state; AMX tile config
    /// and tile data.
    const AVX: u64 = 0b110;
    const AVX512: u64 = 0b1110_0000 | AVX;
    const AMX: u64 = (1 << 17) | (1 << 18) | AVX512;

    /// The register state a variant of ggml's x86 CPU backend needs (by its name in ggml's
    /// CMake: the variants with AVX, with AVX-512, with AMX).
    fn needs(variant: &str) -> u64 {
        match variant {
            "sandybridge" | "ivybridge" | "piledriver" | "haswell" | "alderlake" => AVX,
            "skylakex" | "cannonlake" | "cascadelake" | "icelake" | "cooperlake" | "zen4" => AVX512,
            "sapphirerapids" => AMX,
            _ => 0,
        }
    }

    /// Whether this process may run `variant`: `Err(None)` when the CPU does not even report its
    /// instructions, `Err(Some(why))` when it does but they cannot be used.
    pub fn allows(variant: &str) -> Result<(), Option<String>> {
        let need = needs(variant);
        if need == 0 {
            return Ok(());
        }
        if !reports(need) {
            return Err(None);
        }
        if need == AMX {
            return Err(Some(AMX_BROKEN.into()));
        }
        let have = xcr0();
        if have & need != need {
            let what = if need & AVX512 == AVX512 { "AVX-512" } else { "AVX" };
            return Err(Some(format!(
                "the CPU reports {what}, but the operating system does not enable its registers (XCR0 {have:#x})"
            )));
        }
        Ok(())
    }

    /// Why the AMX variant is never chosen. Its kernels set up the tile registers from a
    /// configuration on the stack that the compiler (GCC 12 here) reduces to the palette byte: the
    /// row and column sizes are never stored, every tile is left unconfigured, and the first tile
    /// instruction of the first prompt of more than a few tokens raises "Illegal instruction" on
    /// any machine where AMX works (seen: `tilezero` in `tinygemm_kernel_amx`, in Corral's runner
    /// and in llama.cpp's own `llama-bench` built with AMX). Fixed upstream by keeping the
    /// configuration in read-only data (llama.cpp pull request 26954), not in the ggml this
    /// binary is built from. Decoding does not use AMX at all, and Ollama measured it slower on
    /// Sapphire Rapids, so the best AVX-512 variant loses little.
    const AMX_BROKEN: &str = "the CPU reports AMX, but this ggml's AMX kernels run with an unconfigured \
                              tile set (an illegal instruction at the first prompt): the best variant without \
                              AMX is used";

    /// Whether the CPU reports the instructions behind the register state `need` (CPUID: AVX,
    /// AVX-512 Foundation, AMX tiles).
    #[cfg(target_arch = "x86_64")]
    fn reports(need: u64) -> bool {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        let avx = __cpuid(1).ecx & (1 << 28) != 0;
        let leaf7 = if __cpuid(0).eax >= 7 { Some(__cpuid_count(7, 0)) } else { None };
        let avx512 = leaf7.is_some_and(|l| l.ebx & (1 << 16) != 0);
        let amx = leaf7.is_some_and(|l| l.edx & (1 << 24) != 0);
        match need {
            AMX => amx,
            AVX512 => avx512,
            _ => avx,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn reports(_need: u64) -> bool {
        true
    }

    /// The OS-enabled register state, or 0 when the OS has not enabled XSAVE at all.
    #[cfg(target_arch = "x86_64")]
    fn xcr0() -> u64 {
        use std::arch::x86_64::{__cpuid, _xgetbv};
        // CPUID leaf 1 exists on every x86-64 CPU; bit 27 of ECX is OSXSAVE.
        let osxsave = __cpuid(1).ecx & (1 << 27) != 0;
        if !osxsave {
            return 0;
        }
        #[target_feature(enable = "xsave")]
        unsafe fn read() -> u64 {
            _xgetbv(0)
        }
        // SAFETY: OSXSAVE is set, so XGETBV is enabled.
        unsafe { read() }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn xcr0() -> u64 {
        u64::MAX
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn what_each_variant_needs() {
            assert_eq!(needs("x64"), 0);
            assert_eq!(needs("sse42"), 0);
            assert_eq!(needs("haswell"), AVX);
            assert_eq!(needs("zen4"), AVX512);
            assert_eq!(needs("sapphirerapids") & (1 << 18), 1 << 18);
            // The AMX variant is refused wherever the CPU reports AMX, with the reason.
            match allows("sapphirerapids") {
                Err(Some(why)) => assert!(why.contains("AMX") && reports(AMX), "{why}"),
                Err(None) => assert!(!reports(AMX)),
                Ok(()) => panic!("the AMX variant was allowed"),
            }
            // Whatever this machine is, the baseline always runs, and a variant is allowed only
            // if the OS enables its registers.
            assert!(allows("x64").is_ok());
            let have = xcr0();
            for v in ["haswell", "skylakex"] {
                let runs = reports(needs(v)) && have & needs(v) == needs(v);
                assert_eq!(allows(v).is_ok(), runs, "{v}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_needs_its_source_record() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("libggml-cuda.so");
        std::fs::write(&module, b"not a library").unwrap();
        let missing = check_source(&module, "sha256:aa").unwrap_err();
        assert!(missing.contains("libggml-cuda.so.source"), "{missing}");
        std::fs::write(dir.path().join("libggml-cuda.so.source"), "sha256:bb\n").unwrap();
        let other = check_source(&module, "sha256:aa").unwrap_err();
        assert!(other.contains("other llama.cpp source (sha256:bb)") && other.contains("(sha256:aa)"), "{other}");
        std::fs::write(dir.path().join("libggml-cuda.so.source"), "sha256:aa\n").unwrap();
        check_source(&module, "sha256:aa").unwrap();
    }

    #[test]
    fn module_names() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "libggml-cpu-zen4.so",
            "libggml-cuda.so",
            "libggml-base.so.0",
            "libllama.so.0",
            "libggml-cpu-x64.so.source",
        ] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let names: Vec<_> = modules(dir.path()).unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["cpu-zen4", "cuda"]);
    }
}
