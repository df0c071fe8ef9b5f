//! GGUF metadata values. Arrays are stored typed (`Vec<u32>`, not `Vec<MetaValue>`), so that
//! memory stays proportional to the bytes in the file: a 262k-entry token list costs what it
//! weighs on disk, not 32 bytes per element.

use serde_json::{Number, Value};

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(ArrayValue),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A homogeneous metadata array.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayValue {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Arrays of arrays (allowed by the format, nested at most a few levels deep).
    Array(Vec<ArrayValue>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl ArrayValue {
    /// GGUF's type number of the elements (`gguf_type` in ggml: 0 = u8 … 12 = f64).
    pub fn element_type_id(&self) -> u32 {
        match self {
            ArrayValue::U8(_) => 0,
            ArrayValue::I8(_) => 1,
            ArrayValue::U16(_) => 2,
            ArrayValue::I16(_) => 3,
            ArrayValue::U32(_) => 4,
            ArrayValue::I32(_) => 5,
            ArrayValue::F32(_) => 6,
            ArrayValue::Bool(_) => 7,
            ArrayValue::String(_) => 8,
            ArrayValue::Array(_) => 9,
            ArrayValue::U64(_) => 10,
            ArrayValue::I64(_) => 11,
            ArrayValue::F64(_) => 12,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ArrayValue::U8(v) => v.len(),
            ArrayValue::I8(v) => v.len(),
            ArrayValue::U16(v) => v.len(),
            ArrayValue::I16(v) => v.len(),
            ArrayValue::U32(v) => v.len(),
            ArrayValue::I32(v) => v.len(),
            ArrayValue::F32(v) => v.len(),
            ArrayValue::Bool(v) => v.len(),
            ArrayValue::String(v) => v.len(),
            ArrayValue::Array(v) => v.len(),
            ArrayValue::U64(v) => v.len(),
            ArrayValue::I64(v) => v.len(),
            ArrayValue::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The JSON form, as `/api/show` returns it.
    pub fn to_json(&self) -> Value {
        fn nums<T: Copy>(v: &[T], f: impl Fn(T) -> Value) -> Value {
            Value::Array(v.iter().map(|x| f(*x)).collect())
        }
        match self {
            ArrayValue::U8(v) => nums(v, Value::from),
            ArrayValue::I8(v) => nums(v, Value::from),
            ArrayValue::U16(v) => nums(v, Value::from),
            ArrayValue::I16(v) => nums(v, Value::from),
            ArrayValue::U32(v) => nums(v, Value::from),
            ArrayValue::I32(v) => nums(v, Value::from),
            ArrayValue::F32(v) => nums(v, f32_json),
            ArrayValue::Bool(v) => nums(v, Value::from),
            ArrayValue::String(v) => Value::Array(v.iter().map(|s| Value::from(s.as_str())).collect()),
            ArrayValue::Array(v) => Value::Array(v.iter().map(ArrayValue::to_json).collect()),
            ArrayValue::U64(v) => nums(v, Value::from),
            ArrayValue::I64(v) => nums(v, Value::from),
            ArrayValue::F64(v) => nums(v, float_json),
        }
    }
}

/// NaN and infinities have no JSON form; they become `null` rather than failing the response.
fn float_json(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Widens through the shortest decimal form, so `1e-5f32` shows as `1e-5`, not `9.99999974e-6`.
fn f32_json(f: f32) -> Value {
    float_json(f.to_string().parse().unwrap_or(f64::NAN))
}

impl MetaValue {
    /// GGUF's type number of the value (`gguf_type` in ggml: 0 = u8 … 12 = f64, 8 string, 9 array).
    pub fn type_id(&self) -> u32 {
        match self {
            MetaValue::U8(_) => 0,
            MetaValue::I8(_) => 1,
            MetaValue::U16(_) => 2,
            MetaValue::I16(_) => 3,
            MetaValue::U32(_) => 4,
            MetaValue::I32(_) => 5,
            MetaValue::F32(_) => 6,
            MetaValue::Bool(_) => 7,
            MetaValue::String(_) => 8,
            MetaValue::Array(_) => 9,
            MetaValue::U64(_) => 10,
            MetaValue::I64(_) => 11,
            MetaValue::F64(_) => 12,
        }
    }

    /// Any integer type widened to `u64`, if non-negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&ArrayValue> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The JSON form, as `/api/show` returns it.
    pub fn to_json(&self) -> Value {
        match self {
            MetaValue::U8(v) => (*v).into(),
            MetaValue::I8(v) => (*v).into(),
            MetaValue::U16(v) => (*v).into(),
            MetaValue::I16(v) => (*v).into(),
            MetaValue::U32(v) => (*v).into(),
            MetaValue::I32(v) => (*v).into(),
            MetaValue::F32(v) => f32_json(*v),
            MetaValue::Bool(v) => (*v).into(),
            MetaValue::String(v) => v.as_str().into(),
            MetaValue::Array(a) => a.to_json(),
            MetaValue::U64(v) => (*v).into(),
            MetaValue::I64(v) => (*v).into(),
            MetaValue::F64(v) => float_json(*v),
        }
    }
}
