//! Request options: Ollama's defaults < the model's PARAMETERs < the request's `options`, split
//! into what needs a (re)load and what is per request.

use corral_types::params::check_json_options;
use corral_types::runner::{Constraint, LoadOptions, Sampling};
use serde_json::{Map, Value};

use crate::ApiError;

/// Server-wide defaults that come from the environment.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `OLLAMA_CONTEXT_LENGTH` (4096 when unset, as on a machine without a big GPU).
    pub num_ctx: u32,
    /// `OLLAMA_NUM_PARALLEL`; 0 chooses from memory when the model loads.
    pub parallel: u32,
    /// Threads per runner (`CORRAL_NUM_THREAD`; 0 = all cores).
    pub num_thread: u32,
}

/// The options in effect for one request.
#[derive(Debug, Clone)]
pub struct Effective {
    pub sampling: Sampling,
    pub num_predict: Option<u32>,
    /// Tokens kept when the context shifts (`num_keep`).
    pub num_keep: Option<u32>,
    pub stop: Vec<String>,
    pub load: LoadOptions,
}

fn f32_of(v: &Value) -> Option<f32> {
    v.as_f64().map(|f| f as f32)
}
fn i64_of(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

/// Merges and types the options. Request options are validated (400 on a bad one); the model's
/// stored parameters are trusted as far as their types allow.
pub fn effective(
    model_path: &str,
    adapters: Vec<(String, f32)>,
    n_ctx_train: u32,
    model_params: &Map<String, Value>,
    request: Option<&Map<String, Value>>,
    defaults: &Defaults,
) -> Result<Effective, ApiError> {
    let mut merged = model_params.clone();
    if let Some(req) = request {
        let (checked, ignored) = check_json_options(req).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !ignored.is_empty() {
            tracing::warn!(?ignored, "invalid option provided");
        }
        merged.extend(checked);
    }
    let mut s = Sampling::default();
    let mut num_predict = None;
    let mut num_keep = None;
    let mut stop = Vec::new();
    let mut num_ctx = defaults.num_ctx;
    let mut num_batch = 512;
    let mut num_thread = defaults.num_thread;
    let mut num_gpu = -1;
    let mut main_gpu = None;
    let mut use_mmap = None;
    for (k, v) in &merged {
        match k.as_str() {
            "temperature" => s.temperature = f32_of(v).unwrap_or(s.temperature),
            "top_k" => s.top_k = i64_of(v).unwrap_or(40) as i32,
            "top_p" => s.top_p = f32_of(v).unwrap_or(s.top_p),
            "min_p" => s.min_p = f32_of(v).unwrap_or(s.min_p),
            "typical_p" => s.typical_p = f32_of(v).unwrap_or(s.typical_p),
            "repeat_last_n" => s.repeat_last_n = i64_of(v).unwrap_or(64) as i32,
            "repeat_penalty" => s.repeat_penalty = f32_of(v).unwrap_or(s.repeat_penalty),
            "presence_penalty" => s.presence_penalty = f32_of(v).unwrap_or(0.0),
            "frequency_penalty" => s.frequency_penalty = f32_of(v).unwrap_or(0.0),
            "seed" => s.seed = i64_of(v).filter(|n| *n >= 0).map(|n| n as u32),
            "num_predict" => num_predict = i64_of(v).filter(|n| *n > 0).map(|n| n.min(u32::MAX as i64) as u32),
            // -1 keeps the whole prompt.
            "num_keep" => {
                num_keep =
                    i64_of(v).filter(|n| *n >= -1).map(|n| if n < 0 { u32::MAX } else { n.min(u32::MAX as i64) as u32 })
            }
            "stop" => {
                stop = v
                    .as_array()
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                    .unwrap_or_default()
            }
            "num_ctx" => num_ctx = i64_of(v).unwrap_or(num_ctx as i64).clamp(4, u32::MAX as i64) as u32,
            "num_batch" => num_batch = i64_of(v).unwrap_or(512).clamp(1, 1 << 16) as u32,
            "num_thread" => num_thread = i64_of(v).unwrap_or(0).clamp(0, 1024) as u32,
            "num_gpu" => num_gpu = i64_of(v).unwrap_or(-1).clamp(-1, 1 << 16) as i32,
            "main_gpu" => main_gpu = i64_of(v).filter(|n| (0..=1 << 16).contains(n)).map(|n| n as u32),
            "use_mmap" => use_mmap = v.as_bool(),
            _ => {}
        }
    }
    if n_ctx_train > 0 {
        num_ctx = num_ctx.min(n_ctx_train);
    }
    Ok(Effective {
        sampling: s,
        num_predict,
        num_keep,
        stop,
        load: LoadOptions {
            model_path: model_path.to_string(),
            adapters,
            num_ctx,
            parallel: defaults.parallel,
            num_batch,
            num_thread,
            num_gpu,
            main_gpu,
            use_mmap,
            ..Default::default()
        },
    })
}

/// `format`: absent/null/"" → none, `"json"`, or a JSON Schema object.
pub fn constraint(format: Option<&Value>) -> Result<Option<Constraint>, ApiError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(Constraint::Json)),
        Some(Value::Object(o)) => Ok(Some(Constraint::JsonSchema(Value::Object(o.clone()).to_string()))),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid format: {other}; expected \"json\" or a valid JSON Schema object"
        ))),
    }
}

/// `top_logprobs` must be 0–20; `logprobs` turns them on.
pub fn logprobs(on: bool, top: Option<i64>) -> Result<Option<u32>, ApiError> {
    let top = top.unwrap_or(0);
    if !(0..=20).contains(&top) {
        return Err(ApiError::bad_request("top_logprobs must be between 0 and 20"));
    }
    Ok(on.then_some(top as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> Defaults {
        Defaults { num_ctx: 4096, parallel: 1, num_thread: 1 }
    }

    #[test]
    fn precedence_defaults_model_request() {
        let model = json!({"temperature": 0.2, "top_k": 10, "stop": ["A"]});
        let req = json!({"temperature": 0.9, "num_ctx": 99999, "seed": 42});
        let e = effective("m", vec![], 8192, model.as_object().unwrap(), req.as_object(), &defaults()).unwrap();
        assert_eq!(e.sampling.temperature, 0.9);
        assert_eq!(e.sampling.top_k, 10);
        assert_eq!(e.sampling.top_p, 0.9, "Ollama's default");
        assert_eq!(e.sampling.seed, Some(42));
        assert_eq!(e.stop, vec!["A"]);
        assert_eq!(e.load.num_ctx, 8192, "clamped to the training context");
        assert_eq!(e.num_predict, None);
        let bad = json!({"num_ctx": "big"});
        assert!(effective("m", vec![], 0, &Map::new(), bad.as_object(), &defaults()).is_err());
    }

    #[test]
    fn formats() {
        assert!(constraint(Some(&json!(""))).unwrap().is_none());
        assert_eq!(constraint(Some(&json!("json"))).unwrap(), Some(Constraint::Json));
        assert!(matches!(constraint(Some(&json!({"type": "object"}))).unwrap(), Some(Constraint::JsonSchema(_))));
        assert_eq!(
            constraint(Some(&json!("yaml"))).unwrap_err().message,
            "invalid format: \"yaml\"; expected \"json\" or a valid JSON Schema object"
        );
        assert!(logprobs(true, Some(21)).is_err());
        assert_eq!(logprobs(true, Some(3)).unwrap(), Some(3));
    }
}
