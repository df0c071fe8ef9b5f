//! Request options: Ollama's defaults < the model's PARAMETERs < the request's `options`, split
//! into what needs a (re)load and what is per request. The layers are
//! [`Options`](corral_types::params::Options), defined with the PARAMETER table itself.

use corral_types::params::Options;
use corral_types::runner::{Constraint, LoadOptions, Sampling, Speculation};
use serde_json::Value;

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
    /// Load Ollama-published GGUFs untranslated (`OLLAMA_LLAMA_CPP_COMPAT=0`).
    pub no_compat: bool,
    /// Draft at every step drafting is on, even where pacing finds it does not pay
    /// (`CORRAL_DRAFT_ALWAYS`: for measuring drafting, and for tests that must see it happen).
    pub draft_always: bool,
}

/// The options in effect for one request.
#[derive(Debug, Clone)]
pub struct Effective {
    pub sampling: Sampling,
    pub num_predict: Option<u32>,
    /// Tokens kept when the context shifts (`num_keep`).
    pub num_keep: Option<u32>,
    pub stop: Vec<String>,
    /// Speculative decoding (`draft_num_predict`): drafts from the draft model if the model has
    /// one, else from prompt lookup.
    pub speculation: Option<Speculation>,
    pub load: LoadOptions,
}

/// Most tokens drafted per step when `draft_num_predict` is not set, by a draft model (Ollama's
/// default) and, unlike Ollama, by prompt lookup when there is none. Lookup is on because the
/// runner drafts only while it pays: measured with `bench/speculative.sh` (Qwen2.5-Coder-1.5B, two
/// cores), a code-writing answer ran at 1.02x its speed without lookup and a code-editing answer
/// at 1.84x. `draft_num_predict 0` turns drafting off.
pub const DEFAULT_DRAFT_NUM_PREDICT: u32 = 4;

/// The options in effect: `layers` (a request's options over the model's PARAMETERs) over
/// Ollama's defaults and the server's.
pub fn effective(
    model_path: &str,
    adapters: Vec<(String, f32)>,
    draft_path: Option<String>,
    n_ctx_train: u32,
    layers: Options,
    defaults: &Defaults,
) -> Effective {
    // Every field named, no `..`: a parameter added to the table that reaches no runner option
    // is a compile error here rather than an option silently ignored.
    let Options {
        num_keep,
        seed,
        num_predict,
        top_k,
        top_p,
        min_p,
        typical_p,
        repeat_last_n,
        temperature,
        repeat_penalty,
        presence_penalty,
        frequency_penalty,
        stop,
        num_ctx,
        num_batch,
        num_gpu,
        main_gpu,
        use_mmap,
        num_thread,
        draft_num_predict,
    } = layers;
    let d = Sampling::default();
    let sampling = Sampling {
        temperature: temperature.unwrap_or(d.temperature),
        top_k: top_k.map_or(d.top_k, |k| k as i32),
        top_p: top_p.unwrap_or(d.top_p),
        min_p: min_p.unwrap_or(d.min_p),
        typical_p: typical_p.unwrap_or(d.typical_p),
        repeat_last_n: repeat_last_n.map_or(d.repeat_last_n, |n| n as i32),
        repeat_penalty: repeat_penalty.unwrap_or(d.repeat_penalty),
        presence_penalty: presence_penalty.unwrap_or(d.presence_penalty),
        frequency_penalty: frequency_penalty.unwrap_or(d.frequency_penalty),
        seed: seed.filter(|n| *n >= 0).map(|n| n as u32),
    };
    let mut num_ctx = num_ctx.map_or(defaults.num_ctx, |n| n.clamp(4, u32::MAX as i64) as u32);
    if n_ctx_train > 0 {
        num_ctx = num_ctx.min(n_ctx_train);
    }
    Effective {
        sampling,
        num_predict: num_predict.filter(|n| *n > 0).map(|n| n.min(u32::MAX as i64) as u32),
        // -1 keeps the whole prompt.
        num_keep: num_keep.filter(|n| *n >= -1).map(|n| if n < 0 { u32::MAX } else { n.min(u32::MAX as i64) as u32 }),
        stop: stop.unwrap_or_default(),
        speculation: Some(draft_num_predict.map_or(DEFAULT_DRAFT_NUM_PREDICT, |n| n.clamp(0, 64) as u32))
            .filter(|n| *n > 0)
            .map(|max_tokens| Speculation { max_tokens, always: defaults.draft_always }),
        load: LoadOptions {
            model_path: model_path.to_string(),
            adapters,
            draft_path,
            num_ctx,
            parallel: defaults.parallel,
            num_batch: num_batch.map_or(512, |n| n.clamp(1, 1 << 16) as u32),
            num_thread: num_thread.map_or(defaults.num_thread, |n| n.clamp(0, 1024) as u32),
            num_gpu: num_gpu.map_or(-1, |n| n.clamp(-1, 1 << 16) as i32),
            main_gpu: main_gpu.filter(|n| (0..=1 << 16).contains(n)).map(|n| n as u32),
            use_mmap,
            no_compat: defaults.no_compat,
            ..Default::default()
        },
    }
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
    use crate::infer::request::request_options;
    use corral_types::params::{insert_text_param, ParamType, PARAMETERS};
    use serde_json::{json, Map};

    fn defaults() -> Defaults {
        Defaults { num_ctx: 4096, parallel: 1, num_thread: 1, no_compat: false, draft_always: false }
    }

    #[test]
    fn precedence_defaults_model_request() {
        let model = Options::from_json(json!({"temperature": 0.2, "top_k": 10, "stop": ["A"]}).as_object().unwrap());
        let req = request_options(json!({"temperature": 0.9, "num_ctx": 99999, "seed": 42}).as_object()).unwrap();
        let e = effective("m", vec![], None, 8192, req.over(model), &defaults());
        assert_eq!(e.sampling.temperature, 0.9);
        assert_eq!(e.sampling.top_k, 10);
        assert_eq!(e.sampling.top_p, 0.9, "Ollama's default");
        assert_eq!(e.sampling.seed, Some(42));
        assert_eq!(e.stop, vec!["A"]);
        assert_eq!(e.load.num_ctx, 8192, "clamped to the training context");
        assert_eq!(e.num_predict, None);
        assert!(request_options(json!({"num_ctx": "big"}).as_object()).is_err());
        // A negative seed over the model's is a random one; no limit over the model's limit.
        let model = Options::from_json(json!({"seed": 42, "num_predict": 100}).as_object().unwrap());
        let req = request_options(json!({"seed": -1, "num_predict": -1}).as_object()).unwrap();
        let e = effective("m", vec![], None, 0, req.over(model), &defaults());
        assert_eq!((e.sampling.seed, e.num_predict), (None, None));
    }

    /// Issue 27: the PARAMETER table, the request options and the runner's options agree. For
    /// every name a Modelfile may set, a value set by `PARAMETER` and the same value sent as a
    /// request option each change the options the runner gets, and change them alike.
    #[test]
    fn every_parameter_and_option_reaches_the_runner() {
        let defaults = Defaults { num_ctx: 4096, parallel: 1, num_thread: 0, no_compat: false, draft_always: false };
        let run = |layers: Options| format!("{:?}", effective("m", vec![], None, 0, layers, &defaults));
        let unset = run(Options::default());
        for &(name, ty) in PARAMETERS {
            // Values no default has, that survive every clamp.
            let (text, json) = match ty {
                ParamType::Int => ("3", json!(3)),
                ParamType::Float => ("0.37", json!(0.37)),
                ParamType::Bool => ("false", json!(false)),
                ParamType::StringList => ("END", json!(["END"])),
            };
            let mut modelfile = Map::new();
            insert_text_param(&mut modelfile, name, text).unwrap();
            let from_parameter = run(Options::from_json(&modelfile));
            assert_ne!(from_parameter, unset, "PARAMETER {name} {text} does not reach the runner");
            let request = Map::from_iter([(name.to_string(), json)]);
            let from_option = run(request_options(Some(&request)).unwrap());
            assert_eq!(from_option, from_parameter, "option {name} and PARAMETER {name} differ");
        }
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
