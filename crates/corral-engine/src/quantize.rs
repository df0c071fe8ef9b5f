//! Quantizing a GGUF with llama.cpp's own quantizer (`llama_model_quantize`), for
//! `create --quantize`. It runs in a runner process (`corral runner --quantize`), never in the
//! server's, like everything else that initialises llama.cpp.
//!
//! llama.cpp reports progress only in its log, one `[  i/  n] name - [shape], type = …` line per
//! tensor; the log callback installed for the quantization reads those counters.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;

/// A progress report: tensors done, tensors in all.
type Progress<'a> = &'a mut dyn FnMut(u32, u32);

/// Quantizes `input` (an F32, F16 or BF16 GGUF) to `output` as llama.cpp file type `ftype`
/// (`LLAMA_FTYPE_MOSTLY_Q4_K_M` is 15…) with `threads` threads (0: all cores), calling `progress`
/// after each tensor. The backend must be loaded ([`crate::backends::load`]).
///
/// An input in a layout published for Ollama's engine is translated as it would be for loading
/// (when `compat`), so the output is in llama.cpp's layout, its hidden tensors left out.
pub fn quantize(
    input: &Path,
    output: &Path,
    ftype: u32,
    threads: i32,
    compat: bool,
    mut progress: impl FnMut(u32, u32),
) -> Result<(), String> {
    let path = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string());
    crate::llama::init_backend()?;
    crate::compat::prepare(&input.to_string_lossy(), compat)?;
    crate::log::take_recent();
    let (input, output) = (path(input)?, path(output)?);
    // SAFETY: takes no arguments and only fills in a plain struct it returns by value; it touches
    // no llama.cpp state, so it is sound whenever it is called.
    let mut params = unsafe { llama_cpp_sys_2::llama_model_quantize_default_params() };
    params.nthread = threads;
    params.ftype = ftype;
    let mut report: Progress<'_> = &mut progress;
    // SAFETY: the callback reads `report` through `user_data` only while llama_model_quantize
    // runs (it logs from the calling thread); the quiet callback replaces it before `report` goes.
    // The quantize call itself gets two NUL-terminated paths (`CString`s) and a `params` struct
    // filled in by llama.cpp, all owned by this frame and alive until it returns.
    let code = unsafe {
        llama_cpp_sys_2::llama_log_set(Some(on_log), (&mut report as *mut Progress<'_>).cast::<c_void>());
        let code = llama_cpp_sys_2::llama_model_quantize(input.as_ptr(), output.as_ptr(), &params);
        crate::llama::quiet();
        code
    };
    if code != 0 {
        return Err(crate::log::with_reasons(format!("llama.cpp could not quantize the model (code {code})")));
    }
    Ok(())
}

unsafe extern "C" fn on_log(level: llama_cpp_sys_2::ggml_log_level, text: *const c_char, user_data: *mut c_void) {
    if text.is_null() || user_data.is_null() {
        return;
    }
    // SAFETY: `text` is not null (checked above), and llama.cpp passes a NUL-terminated string
    // that stays valid for the length of this call, and `text` is not kept past it.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    // Warnings and errors still reach the recorder, for the error a failed quantization gives.
    crate::log::record(level, &text);
    if let Some((done, total)) = tensor_counter(&text) {
        // SAFETY: `user_data` is not null, and this callback is installed only by `quantize`, with
        // the address of its `report`, which outlives the quantization. llama.cpp calls it on the
        // thread that is inside `llama_model_quantize`, where nothing else uses `report`, so this
        // is the only reference to it while it lives.
        let report = unsafe { &mut *user_data.cast::<Progress<'_>>() };
        report(done, total);
    }
}

/// The `[  i/  n]` that starts llama.cpp's line for each tensor it quantizes.
fn tensor_counter(line: &str) -> Option<(u32, u32)> {
    let inside = line.trim_start().strip_prefix('[')?.split_once(']')?.0;
    let (done, total) = inside.split_once('/')?;
    Some((done.trim().parse().ok()?, total.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tensor_counter_is_read_from_llama_cpps_lines() {
        assert_eq!(
            tensor_counter(
                "[  12/ 272]                  blk.1.attn_k.weight - [  576,   192,     1,     1], type =    f16, "
            ),
            Some((12, 272))
        );
        assert_eq!(tensor_counter("llama_model_quantize_impl: model size  =   256.60 MiB"), None);
        assert_eq!(tensor_counter("[x/y]"), None);
    }
}
