//! Hands the translation of an Ollama-published GGUF ([`corral_compat`]) to llama.cpp's model
//! loader before the file is loaded. The loader's hooks (`compat/`, built into llama.cpp) apply
//! it to their in-memory view of the header; the file itself is never written.
//!
//! The same C library (`compat/corral-compat.cpp`, inside `libllama`) has two run-time helpers
//! reached from here: a flag that stops the projector's encodes (`watch_encodes`), and
//! llama.cpp's own count of a context's bytes on a device (`device_bytes`).

use std::ffi::{c_char, CString};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use corral_compat::{Edit, Translation};
use corral_gguf::{ArrayValue, MetaValue};

/// What was found about a file before loading it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prepared {
    /// The file's `general.architecture`.
    pub architecture: Option<String>,
    /// The handler whose translation was installed, if any.
    pub translated: Option<&'static str>,
}

/// Reads the header at `path` and, when `enabled` and the file is in a published layout,
/// installs its translation for the next load of that path. Refuses a file Corral recognises but
/// cannot translate, with a message that names its architecture.
pub fn prepare(path: &str, enabled: bool) -> Result<Prepared, String> {
    let header = match corral_gguf::read_path(Path::new(path)) {
        Ok(h) => h,
        // Not a GGUF Corral can read: llama.cpp gets to say why.
        Err(_) => return Ok(Prepared::default()),
    };
    let architecture = header.architecture().map(str::to_string);
    forget(path);
    if !enabled {
        return Ok(Prepared { architecture, translated: None });
    }
    match corral_compat::translate(&header).map_err(|e| e.to_string())? {
        Some(t) => {
            install(path, &t)?;
            Ok(Prepared { architecture, translated: Some(t.handler) })
        }
        None => Ok(Prepared { architecture, translated: None }),
    }
}

/// Installs, when `enabled` and the file at `path` is a published model with a vision tower
/// Corral can translate, the projector-side translation that lets the same file be loaded as its
/// own projector. Returns the bytes of projector weights the file holds: all of a projector file,
/// or only the media tensors (`v.*`, `mm.*`, `a.*`) of the model file `model_path` serving as its
/// own projector.
pub fn prepare_projector(path: &str, model_path: &str, enabled: bool) -> Result<u64, String> {
    let p = c(path)?;
    // SAFETY: a NUL-terminated string that outlives the call.
    unsafe { corral_compat_forget_clip(p.as_ptr()) };
    // Not a GGUF Corral can read: llama.cpp gets to say why.
    let Ok(header) = corral_gguf::read_path(Path::new(path)) else { return Ok(0) };
    let media = |name: &str| ["v.", "mm.", "a."].iter().any(|p| name.starts_with(p));
    let bytes = if path == model_path {
        header.tensors.iter().filter(|t| media(&t.name)).map(|t| t.size).sum()
    } else {
        std::fs::metadata(path).map_or(0, |m| m.len())
    };
    if let Some(t) = corral_compat::translate_clip(&header).filter(|_| enabled) {
        install_with(path, &t, corral_compat_install_clip, corral_compat_forget_clip)?;
    }
    Ok(bytes)
}

// The C side lives in compat/corral-compat.cpp, compiled into libllama.
unsafe extern "C" {
    fn corral_compat_begin(path: *const c_char) -> *mut Plan;
    fn corral_compat_set(plan: *mut Plan, key: *const c_char, ty: i32, data: *const u8, n: usize, is_array: i32);
    fn corral_compat_set_str(plan: *mut Plan, key: *const c_char, value: *const c_char);
    fn corral_compat_set_strs(plan: *mut Plan, key: *const c_char, values: *const *const c_char, n: usize);
    fn corral_compat_remove(plan: *mut Plan, key: *const c_char);
    fn corral_compat_truncate(plan: *mut Plan, key: *const c_char, n: usize);
    fn corral_compat_set_arch(plan: *mut Plan, arch: *const c_char);
    fn corral_compat_rename(plan: *mut Plan, from: *const c_char, to: *const c_char);
    fn corral_compat_reshape(plan: *mut Plan, name: *const c_char, ne: *const i64, n_dims: i32);
    fn corral_compat_hide(plan: *mut Plan, name: *const c_char);
    fn corral_compat_assemble(plan: *mut Plan, name: *const c_char, offsets: *const u64, sizes: *const u64, n: usize);
    fn corral_compat_promote(plan: *mut Plan, name: *const c_char);
    fn corral_compat_row_as_f32(plan: *mut Plan, name: *const c_char, source: *const c_char, row: u64);
    fn corral_compat_install(plan: *mut Plan);
    fn corral_compat_forget(path: *const c_char);
    fn corral_compat_install_clip(plan: *mut Plan);
    fn corral_compat_forget_clip(path: *const c_char);
    fn corral_compat_watch_encodes(flag: *const u8);
    fn corral_compat_device_bytes(ctx: *const llama_cpp_sys_2::llama_context, device: *const c_char) -> u64;
}

/// The bytes llama.cpp allocated for `ctx` (weights, KV cache, compute buffers) in the memory of
/// the device named `device` (`Vulkan0`, `CUDA0`…), by its own accounting.
pub(crate) fn device_bytes(ctx: &mut llama_cpp_2::context::LlamaContext, device: &str) -> u64 {
    let Ok(name) = c(device) else { return 0 };
    // SAFETY: a live context and a NUL-terminated name, both outliving the call.
    unsafe { corral_compat_device_bytes(ctx.as_mut_ptr(), name.as_ptr()) }
}

/// Makes the projector's encodes on this thread stop (and fail) once `stop` is set, or not at all
/// (`None`): the CPU backend looks at it between two of the graph's nodes. The caller passes
/// `None` before `stop` is dropped.
pub(crate) fn watch_encodes(stop: Option<&AtomicBool>) {
    // A `bool` is one byte, 0 or 1; the C side reads it atomically from the backend's threads.
    let flag = stop.map_or(std::ptr::null(), |s| s.as_ptr().cast_const().cast::<u8>());
    // SAFETY: the flag outlives its watch (the caller resets it before dropping it).
    unsafe { corral_compat_watch_encodes(flag) }
}

#[repr(C)]
struct Plan {
    _opaque: [u8; 0],
}

fn c(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("a NUL byte in {s:?}"))
}

/// Removes any translation installed for `path`.
pub fn forget(path: &str) {
    if let Ok(p) = c(path) {
        // SAFETY: a NUL-terminated string that outlives the call; the C side copies what it keeps.
        unsafe { corral_compat_forget(p.as_ptr()) }
    }
}

fn install(path: &str, t: &Translation) -> Result<(), String> {
    install_with(path, t, corral_compat_install, corral_compat_forget)
}

/// Hands `t` to the C side as a plan for `path`, installed with `install` (the model loader's
/// registry or the projector loader's); `forget` removes it again if it could not be completed.
fn install_with(
    path: &str,
    t: &Translation,
    install: unsafe extern "C" fn(*mut Plan),
    forget: unsafe extern "C" fn(*const c_char),
) -> Result<(), String> {
    let p = c(path)?;
    // SAFETY (this block and every call below): the plan pointer comes from corral_compat_begin
    // and is used only here, until corral_compat_install takes it; every string is a
    // NUL-terminated CString and every buffer a Vec that outlive the call they are passed to (the
    // C side copies them).
    unsafe {
        let plan = corral_compat_begin(p.as_ptr());
        let result = fill(plan, t);
        // Only installing frees a plan. One that could not be filled completely is installed and
        // removed at once: a half-translated model must not load.
        install(plan);
        if result.is_err() {
            forget(p.as_ptr());
        }
        result
    }
}

unsafe fn fill(plan: *mut Plan, t: &Translation) -> Result<(), String> {
    unsafe {
        for edit in &t.edits {
            match edit {
                Edit::Remove(key) => corral_compat_remove(plan, c(key)?.as_ptr()),
                Edit::Truncate(key, n) => corral_compat_truncate(plan, c(key)?.as_ptr(), *n),
                Edit::Set(key, MetaValue::String(s)) => corral_compat_set_str(plan, c(key)?.as_ptr(), c(s)?.as_ptr()),
                Edit::Set(key, MetaValue::Array(ArrayValue::String(items))) => {
                    let owned = items.iter().map(|s| c(s)).collect::<Result<Vec<_>, _>>()?;
                    let ptrs: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
                    corral_compat_set_strs(plan, c(key)?.as_ptr(), ptrs.as_ptr(), ptrs.len());
                }
                Edit::Set(key, v) => {
                    let data = corral_gguf::raw_bytes(v).ok_or_else(|| format!("cannot hand {key} to llama.cpp"))?;
                    let (ty, n, is_array) = match v {
                        MetaValue::Array(a) => (a.element_type_id(), a.len(), 1),
                        _ => (v.type_id(), 1, 0),
                    };
                    corral_compat_set(plan, c(key)?.as_ptr(), ty as i32, data.as_ptr(), n, is_array);
                }
            }
        }
        if let Some(arch) = &t.architecture {
            corral_compat_set_arch(plan, c(arch)?.as_ptr());
        }
        for (from, to) in &t.renames {
            corral_compat_rename(plan, c(from)?.as_ptr(), c(to)?.as_ptr());
        }
        for (name, dims) in &t.reshapes {
            let ne: Vec<i64> = dims.iter().map(|d| *d as i64).collect();
            corral_compat_reshape(plan, c(name)?.as_ptr(), ne.as_ptr(), ne.len() as i32);
        }
        for name in &t.hidden {
            corral_compat_hide(plan, c(name)?.as_ptr());
        }
        for (name, ranges) in &t.assembled {
            let (offsets, sizes): (Vec<u64>, Vec<u64>) = ranges.iter().copied().unzip();
            corral_compat_assemble(plan, c(name)?.as_ptr(), offsets.as_ptr(), sizes.as_ptr(), ranges.len());
        }
        for name in &t.promoted {
            corral_compat_promote(plan, c(name)?.as_ptr());
        }
        for (name, source, row) in &t.rows_as_f32 {
            corral_compat_row_as_f32(plan, c(name)?.as_ptr(), c(source)?.as_ptr(), *row);
        }
    }
    Ok(())
}
