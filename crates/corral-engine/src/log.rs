//! llama.cpp's log: shown on stderr when the runner is verbose, otherwise dropped, except that
//! the last warning and error lines are kept, so that a model that fails to load can say why
//! (llama.cpp's own API only returns "null").

use std::collections::VecDeque;
use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

use llama_cpp_sys_2::ggml_log_level;

/// How many warning/error lines are kept.
const KEEP: usize = 6;

struct Recent {
    lines: VecDeque<String>,
    /// The line being assembled (llama.cpp logs a line in pieces; a piece without a level
    /// continues the previous one).
    partial: String,
    partial_level: ggml_log_level,
}

static RECENT: Mutex<Recent> = Mutex::new(Recent { lines: VecDeque::new(), partial: String::new(), partial_level: 0 });
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Routes llama.cpp's, ggml's and the multimodal library's log through [`on_log`].
pub(crate) fn install(verbose: bool) {
    VERBOSE.store(verbose, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: installs a function that reads only its `text` argument, within the call.
    unsafe {
        llama_cpp_sys_2::llama_log_set(Some(on_log), std::ptr::null_mut());
        // `mtmd` (projectors) keeps a logger of its own.
        llama_cpp_sys_2::mtmd_helper_log_set(Some(on_log), std::ptr::null_mut());
    }
}

/// The warning and error lines logged since the last call, oldest first.
pub(crate) fn take_recent() -> Vec<String> {
    let mut r = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    r.partial.clear();
    r.lines.drain(..).collect()
}

/// `text` followed by llama.cpp's recent warnings and errors, when there are any.
pub(crate) fn with_reasons(text: String) -> String {
    let lines = take_recent();
    if lines.is_empty() {
        return text;
    }
    format!("{text} (llama.cpp: {})", lines.join("; "))
}

unsafe extern "C" fn on_log(level: ggml_log_level, text: *const c_char, _user_data: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: not null (checked), NUL-terminated and valid for this call, not kept past it.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    if VERBOSE.load(std::sync::atomic::Ordering::Relaxed) {
        eprint!("{text}");
    }
    record(level, &text);
}

/// Keeps `text` if it is (part of) a warning or error line.
pub(crate) fn record(level: ggml_log_level, text: &str) {
    const WARN: ggml_log_level = 3;
    const ERROR: ggml_log_level = 4;
    const CONT: ggml_log_level = 5;
    let mut r = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    if level != CONT {
        r.partial.clear();
        r.partial_level = level;
    }
    if r.partial_level != WARN && r.partial_level != ERROR {
        return;
    }
    r.partial.push_str(text);
    while let Some(end) = r.partial.find('\n') {
        let line: String = r.partial.drain(..=end).collect();
        let line = line.trim().to_string();
        if !line.is_empty() {
            if r.lines.len() == KEEP {
                r.lines.pop_front();
            }
            r.lines.push_back(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_warning_and_error_lines_whole() {
        take_recent();
        record(2, "llama_model_loader: loaded meta data\n");
        record(4, "llama_model_load: error loading model: ");
        record(5, "missing tensor 'blk.0.attn_q.weight'\n");
        record(3, "a warning\n");
        assert_eq!(
            take_recent(),
            ["llama_model_load: error loading model: missing tensor 'blk.0.attn_q.weight'", "a warning"]
        );
        assert!(take_recent().is_empty());
        for i in 0..10 {
            record(4, &format!("e{i}\n"));
        }
        assert_eq!(take_recent(), ["e4", "e5", "e6", "e7", "e8", "e9"]);
    }
}
