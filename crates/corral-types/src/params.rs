//! The Modelfile `PARAMETER` set and request `options`: which names exist, their types, and how a
//! value written as text (Modelfile, REPL `/set parameter`) or as JSON (API) becomes a typed value.
//!
//! Values are normalised to JSON (`i64`, `f64`, `bool`, or an array of strings for `stop`), which is
//! also how Ollama stores them in a model's params layer.
//!
//! One table ([`parameters!`]) is the source of every name: it defines [`PARAMETERS`] (what a
//! Modelfile and a request may set, with types) and [`Options`] (the typed values a layer sets),
//! so a parameter cannot exist in one and be missing from the other. The server turns `Options`
//! into the runner's options with a destructuring that names every field, so a new parameter
//! that reaches no runner option does not compile either.

use serde_json::{Map, Number, Value};

/// The type of one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Int,
    Float,
    Bool,
    /// Repeatable; accumulates into an array (`stop`).
    StringList,
}

impl ParamType {
    /// The type name Ollama uses in `option "x" must be of type …` errors.
    fn api_name(self) -> &'static str {
        match self {
            ParamType::Int => "integer",
            ParamType::Float => "float32",
            ParamType::Bool => "boolean",
            ParamType::StringList => "array",
        }
    }
}

/// The Rust type that holds a value of each [`ParamType`].
macro_rules! param_value_type {
    (Int) => { i64 };
    (Float) => { f32 };
    (Bool) => { bool };
    (StringList) => { Vec<String> };
}

/// Defines, from one list of `name: Type`, the [`PARAMETERS`] table and the [`Options`] struct
/// with one optional field per parameter, its JSON reading and its layering.
macro_rules! parameters {
    ($($(#[doc = $doc:expr])* $name:ident: $kind:ident,)*) => {
        /// Every valid parameter name and its type, in the order of Ollama's `api.Options`.
        pub const PARAMETERS: &[(&str, ParamType)] = &[$((stringify!($name), ParamType::$kind),)*];

        /// Option values set by one layer: the model's PARAMETERs, or a request's `options`. An
        /// unset field falls through to the layer below ([`Options::over`]), and at the bottom to
        /// Ollama's defaults (in the server, where the runner's options are made).
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct Options {
            $($(#[doc = $doc])* pub $name: Option<param_value_type!($kind)>,)*
        }

        impl Options {
            /// From JSON values whose types were checked ([`check_json_options`]); a model's
            /// stored PARAMETERs are trusted as far as their types allow (a value of the wrong
            /// type is as if unset). Names that are no parameter were dropped by the check.
            pub fn from_json(map: &Map<String, Value>) -> Options {
                Options { $($name: map.get(stringify!($name)).and_then(ParamValue::from_json),)* }
            }

            /// This layer over `base`: its set values win.
            pub fn over(self, base: Options) -> Options {
                Options { $($name: self.$name.or(base.$name),)* }
            }
        }
    };
}

parameters! {
    /// Tokens kept from the start when the context shifts; -1 keeps the whole prompt.
    num_keep: Int,
    /// Negative: a random seed.
    seed: Int,
    /// Zero or negative: no limit.
    num_predict: Int,
    top_k: Int,
    top_p: Float,
    min_p: Float,
    typical_p: Float,
    repeat_last_n: Int,
    temperature: Float,
    repeat_penalty: Float,
    presence_penalty: Float,
    frequency_penalty: Float,
    stop: StringList,
    num_ctx: Int,
    num_batch: Int,
    /// -1: as many layers as fit.
    num_gpu: Int,
    main_gpu: Int,
    use_mmap: Bool,
    num_thread: Int,
    /// Most tokens drafted per step for speculative decoding; 0 turns it off.
    draft_num_predict: Int,
}

/// A typed value read from checked JSON.
trait ParamValue: Sized {
    fn from_json(v: &Value) -> Option<Self>;
}

impl ParamValue for i64 {
    fn from_json(v: &Value) -> Option<i64> {
        v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
    }
}

impl ParamValue for f32 {
    fn from_json(v: &Value) -> Option<f32> {
        v.as_f64().map(|f| f as f32)
    }
}

impl ParamValue for bool {
    fn from_json(v: &Value) -> Option<bool> {
        v.as_bool()
    }
}

impl ParamValue for Vec<String> {
    fn from_json(v: &Value) -> Option<Vec<String>> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
    }
}

/// Parameters Ollama once had. A Modelfile that sets one gets a warning and the line is ignored.
pub const DEPRECATED: &[&str] = &[
    "penalize_newline",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mlock",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
];

/// Options older clients still send in requests; ignored (with a log line) rather than refused.
pub const IGNORED_OPTIONS: &[&str] = &["tfs_z", "numa"];

/// Why a parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("unknown parameter '{0}'")]
    Unknown(String),
    #[error("invalid int value [{0}]")]
    InvalidInt(String),
    #[error("invalid float value [{0}]")]
    InvalidFloat(String),
    #[error("invalid bool value [{0}]")]
    InvalidBool(String),
    #[error("option \"{name}\" must be of type {expected}")]
    WrongType { name: String, expected: &'static str },
}

/// The type of `name`, if it is a parameter.
pub fn param_type(name: &str) -> Option<ParamType> {
    PARAMETERS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Whether `name` is a removed parameter that is accepted and ignored.
pub fn is_deprecated(name: &str) -> bool {
    DEPRECATED.contains(&name)
}

/// Parses one textual value (`PARAMETER name value`). For `stop` this returns a single string;
/// [`insert_text_param`] does the accumulation.
pub fn parse_text_value(name: &str, raw: &str) -> Result<Value, ParamError> {
    let ty = param_type(name).ok_or_else(|| ParamError::Unknown(name.to_string()))?;
    Ok(match ty {
        ParamType::Int => {
            let v: i64 = raw.parse().map_err(|_| ParamError::InvalidInt(raw.to_string()))?;
            Value::from(v)
        }
        ParamType::Float => {
            Value::Number(parse_f32_range(raw).ok_or_else(|| ParamError::InvalidFloat(raw.to_string()))?)
        }
        ParamType::Bool => Value::Bool(parse_go_bool(raw).ok_or_else(|| ParamError::InvalidBool(raw.to_string()))?),
        ParamType::StringList => Value::String(raw.to_string()),
    })
}

/// Parses `raw` and inserts it into `params`, appending to `stop` rather than replacing it.
pub fn insert_text_param(params: &mut Map<String, Value>, name: &str, raw: &str) -> Result<(), ParamError> {
    let value = parse_text_value(name, raw)?;
    if let Value::String(s) = value {
        let list = params.entry(name.to_string()).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = list {
            items.push(Value::String(s));
        }
    } else {
        params.insert(name.to_string(), value);
    }
    Ok(())
}

/// Checks and normalises a JSON value for `name` (request `options`, create `parameters`), with
/// Ollama's coercions: numbers for integers are truncated, `stop` must be an array of strings.
pub fn check_json_value(name: &str, value: &Value) -> Result<Value, ParamError> {
    let ty = param_type(name).ok_or_else(|| ParamError::Unknown(name.to_string()))?;
    let wrong = || ParamError::WrongType { name: name.to_string(), expected: ty.api_name() };
    Ok(match ty {
        ParamType::Int => match value {
            Value::Number(n) if n.is_i64() => value.clone(),
            Value::Number(n) => {
                let f = n.as_f64().filter(|f| f.is_finite() && f.abs() < 9.2e18).ok_or_else(wrong)?;
                Value::from(f.trunc() as i64)
            }
            _ => return Err(wrong()),
        },
        ParamType::Float => match value {
            Value::Number(n) => {
                let f = n.as_f64().ok_or_else(wrong)?;
                if !(f as f32).is_finite() {
                    return Err(wrong());
                }
                value.clone()
            }
            _ => return Err(wrong()),
        },
        ParamType::Bool => match value {
            Value::Bool(_) => value.clone(),
            _ => return Err(wrong()),
        },
        ParamType::StringList => match value {
            Value::Array(items) if items.iter().all(Value::is_string) => value.clone(),
            _ => return Err(wrong()),
        },
    })
}

/// What to do with a name that is no parameter at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Refuse it (a model's `parameters` at create, as a Modelfile's PARAMETER).
    Refuse,
    /// Drop it with the removed ones (a request's `options`, as Ollama's `Options.FromMap` does:
    /// clients written for an older or newer Ollama send names this one does not know).
    Ignore,
}

/// Validates a whole options object, dropping `null`s, removed options and deprecated names (and
/// unknown ones with [`Unknown::Ignore`]). Returns the normalised object and the names that were
/// dropped (for a warning).
pub fn check_json_options(
    options: &Map<String, Value>,
    unknown: Unknown,
) -> Result<(Map<String, Value>, Vec<String>), ParamError> {
    let mut out = Map::new();
    let mut ignored = Vec::new();
    for (name, value) in options {
        if value.is_null() {
            continue;
        }
        let drop_unknown = unknown == Unknown::Ignore && param_type(name).is_none();
        if drop_unknown || is_deprecated(name) || IGNORED_OPTIONS.contains(&name.as_str()) {
            ignored.push(name.clone());
            continue;
        }
        out.insert(name.clone(), check_json_value(name, value)?);
    }
    Ok((out, ignored))
}

fn parse_f32_range(raw: &str) -> Option<Number> {
    // Go's ParseFloat accepts forms Rust's does too ("1e3", "+0.5"); "inf" and "NaN" parse in both
    // but cannot be stored as JSON, so they are refused here.
    let f: f64 = raw.trim().parse().ok()?;
    if !f.is_finite() || !(f as f32).is_finite() {
        return None;
    }
    Number::from_f64(f)
}

/// `strconv.ParseBool`: the spellings Ollama accepts for booleans.
pub fn parse_go_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn twenty_parameters() {
        assert_eq!(PARAMETERS.len(), 20);
    }

    /// Every parameter a Modelfile may set lands in its own field of [`Options`], typed, and a
    /// layer's set values win over the one below.
    #[test]
    fn every_parameter_reaches_its_options_field() {
        for &(name, ty) in PARAMETERS {
            let raw = match ty {
                ParamType::Int => "7",
                ParamType::Float => "0.25",
                ParamType::Bool => "false",
                ParamType::StringList => "END",
            };
            let mut map = Map::new();
            insert_text_param(&mut map, name, raw).unwrap();
            let set = Options::from_json(&map);
            assert_ne!(set, Options::default(), "{name} was dropped");
            let debug = format!("{set:?}");
            let expected = match ty {
                ParamType::Int => format!("{name}: Some(7)"),
                ParamType::Float => format!("{name}: Some(0.25)"),
                ParamType::Bool => format!("{name}: Some(false)"),
                ParamType::StringList => format!("{name}: Some([\"END\"])"),
            };
            assert!(debug.contains(&expected), "{name}: {debug}");
            assert_eq!(set.clone().over(Options::default()), set);
            assert_eq!(Options::default().over(set.clone()), set);
        }
    }

    #[test]
    fn text_values_are_typed() {
        let mut p = Map::new();
        insert_text_param(&mut p, "num_ctx", "4096").unwrap();
        insert_text_param(&mut p, "temperature", "0.7").unwrap();
        insert_text_param(&mut p, "use_mmap", "F").unwrap();
        insert_text_param(&mut p, "stop", "<|im_end|>").unwrap();
        insert_text_param(&mut p, "stop", "User:").unwrap();
        assert_eq!(
            Value::Object(p),
            json!({"num_ctx": 4096, "temperature": 0.7, "use_mmap": false, "stop": ["<|im_end|>", "User:"]})
        );
    }

    #[test]
    fn text_errors_name_the_value() {
        let e = |n, v| parse_text_value(n, v).unwrap_err().to_string();
        assert_eq!(e("num_ctx", "4k"), "invalid int value [4k]");
        assert_eq!(e("num_ctx", "4.5"), "invalid int value [4.5]");
        assert_eq!(e("temperature", "hot"), "invalid float value [hot]");
        assert_eq!(e("temperature", "NaN"), "invalid float value [NaN]");
        assert_eq!(e("temperature", "1e39"), "invalid float value [1e39]");
        assert_eq!(e("use_mmap", "yes"), "invalid bool value [yes]");
        assert_eq!(e("tfs_z", "1"), "unknown parameter 'tfs_z'");
        assert_eq!(e("Num_Ctx", "1"), "unknown parameter 'Num_Ctx'");
    }

    #[test]
    fn json_values_follow_ollama_coercions() {
        assert_eq!(check_json_value("num_ctx", &json!(2048.9)).unwrap(), json!(2048));
        assert_eq!(check_json_value("temperature", &json!(1)).unwrap(), json!(1));
        assert_eq!(
            check_json_value("stop", &json!("x")).unwrap_err().to_string(),
            "option \"stop\" must be of type array"
        );
        assert_eq!(
            check_json_value("num_ctx", &json!("2048")).unwrap_err().to_string(),
            "option \"num_ctx\" must be of type integer"
        );
        assert_eq!(
            check_json_value("use_mmap", &json!(1)).unwrap_err().to_string(),
            "option \"use_mmap\" must be of type boolean"
        );
        assert!(check_json_value("stop", &json!(["a", 1])).is_err());
        let options = json!({"seed": 1, "numa": true, "mirostat": 2, "top_k": null, "future_knob": 3});
        let (opts, ignored) = check_json_options(options.as_object().unwrap(), Unknown::Ignore).unwrap();
        assert_eq!(Value::Object(opts), json!({"seed": 1}));
        assert_eq!(ignored, vec!["numa", "mirostat", "future_knob"]);
        let e = check_json_options(options.as_object().unwrap(), Unknown::Refuse).unwrap_err();
        assert_eq!(e.to_string(), "unknown parameter 'future_knob'");
        // A known name with a value of the wrong type is refused either way.
        let e = check_json_options(json!({"seed": "x", "bogus": 1}).as_object().unwrap(), Unknown::Ignore).unwrap_err();
        assert_eq!(e.to_string(), "option \"seed\" must be of type integer");
    }
}
