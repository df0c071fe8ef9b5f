//! `create --quantize` with llama.cpp's quantizer: the type names Ollama accepts (and a few
//! more), the check that the source is unquantized, and the run in a runner process
//! (`corral runner --quantize`) whose per-tensor counters become Ollama's progress lines.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use corral_gguf::Gguf;
use corral_store::{Committed, Store};
use corral_types::api::ProgressResponse;

use super::Launcher;
use crate::ApiError;

/// A quantization type: how Ollama spells it in progress lines, and llama.cpp's file type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub name: &'static str,
    pub ftype: u32,
}

/// The llama.cpp file types (`LLAMA_FTYPE_*`) `create --quantize` accepts, in the order the
/// error lists them. Their names are corral-gguf's, the ones `show` prints.
const TARGETS: [u32; 10] = [0, 1, 32, 2, 3, 14, 15, 17, 18, 7];

fn targets() -> impl Iterator<Item = Target> {
    TARGETS.iter().map(|&ftype| Target {
        name: corral_gguf::file_type_name(ftype.into()).expect("every accepted file type has a name"),
        ftype,
    })
}

impl Target {
    /// A type name in any case; `Q4_K` is `Q4_K_M`, as in Ollama. Unknown: a 400 naming it and
    /// the supported ones.
    pub fn parse(name: &str) -> Result<Target, ApiError> {
        let upper = name.trim().to_ascii_uppercase();
        let upper = if upper == "Q4_K" { "Q4_K_M".to_string() } else { upper };
        targets().find(|t| t.name == upper).ok_or_else(|| {
            let names: Vec<&str> = targets().map(|t| t.name).collect();
            ApiError::bad_request(format!(
                "unsupported quantization type {name} - supported types are {}",
                names.join(", ")
            ))
        })
    }
}

/// The source's type name (`F16`…) when it is one llama.cpp quantizes from; else the 400 Ollama
/// gives.
pub(crate) fn source_type(gguf: &Gguf) -> Result<&'static str, ApiError> {
    let unquantized = || ApiError::bad_request("quantization is only supported for F16, BF16 and F32 models");
    match gguf.get_u64("general.file_type") {
        Some(0) => Ok("F32"),
        Some(1) => Ok("F16"),
        Some(32) => Ok("BF16"),
        Some(_) => Err(unquantized()),
        // No file type written: judge by the tensors (F32 = 0, F16 = 1, BF16 = 30).
        None => {
            let kinds: Vec<u32> = gguf.tensors.iter().map(|t| t.kind.id()).collect();
            match () {
                _ if kinds.iter().all(|k| *k == 0) => Ok("F32"),
                _ if kinds.iter().all(|k| matches!(k, 0 | 1)) => Ok("F16"),
                _ if kinds.iter().all(|k| matches!(k, 0 | 30)) => Ok("BF16"),
                _ => Err(unquantized()),
            }
        }
    }
}

/// Quantizes the GGUF blob at `source` (of type `from`) to `target` in a runner process,
/// reporting `quantizing F16 model to Q4_K_M` with tensors done and in all, and commits the
/// result as a new blob (its pin held by the returned [`Committed`]). The output is written in
/// the models directory's blob area, so a full disk or a crash leaves nothing outside it.
pub(crate) fn run(
    launcher: &Launcher,
    store: &Store,
    source: &std::path::Path,
    from: &str,
    target: Target,
    threads: u32,
    progress: &mut dyn FnMut(ProgressResponse),
) -> Result<Committed, ApiError> {
    let out = store.external_blob()?;
    let status = format!("quantizing {from} model to {}", target.name);
    progress(ProgressResponse::status(status.clone()));
    let mut child = launcher
        .quantizer(target.ftype, source, out.path(), threads)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ApiError::internal(format!("could not start the quantizer {}: {e}", launcher.exe.display())))?;
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        let (Some(done), Some(total)) = (v["done"].as_u64(), v["total"].as_u64()) else { continue };
        progress(ProgressResponse {
            status: status.clone(),
            // Ollama's placeholder digest for this step.
            digest: Some("0000000000000000000".into()),
            total: Some(total),
            completed: Some(done),
        });
    }
    let output = child.wait_with_output().map_err(|e| ApiError::internal(format!("the quantizer: {e}")))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let last = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim();
        return Err(ApiError::internal(format!("quantizing failed ({}): {last}", output.status)));
    }
    Ok(out.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_parse_in_any_case_with_ollamas_alias() {
        assert_eq!(Target::parse("q4_K_M").unwrap(), Target { name: "Q4_K_M", ftype: 15 });
        assert_eq!(Target::parse("Q4_K").unwrap().ftype, 15);
        assert_eq!(Target::parse("q8_0").unwrap().ftype, 7);
        assert_eq!(Target::parse("bf16").unwrap().ftype, 32);
        let e = Target::parse("q3_weird").unwrap_err();
        assert_eq!(
            e.message,
            "unsupported quantization type q3_weird - supported types are F32, F16, BF16, Q4_0, Q4_1, Q4_K_S, Q4_K_M, Q5_K_M, Q6_K, Q8_0"
        );
    }
}
