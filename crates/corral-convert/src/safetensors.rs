//! A bounded safetensors reader: an 8-byte little-endian header length, a JSON header naming
//! each tensor's dtype, shape and byte range, then the data. Every range is checked against the
//! file and against its dtype and shape before a byte is read.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ConvertError;

/// Largest header accepted.
const MAX_HEADER: u64 = 100 << 20;

#[derive(Debug, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// One tensor of a safetensors file, as f32 values.
#[derive(Debug, Clone)]
pub struct Tensor {
    /// Outermost dimension first (PyTorch order).
    pub shape: Vec<u64>,
    pub values: Vec<f32>,
}

/// A parsed file: tensor names to where their data lies.
pub struct Safetensors {
    bytes: Vec<u8>,
    data_start: usize,
    entries: BTreeMap<String, Entry>,
}

impl Safetensors {
    pub fn parse(bytes: Vec<u8>) -> Result<Self, ConvertError> {
        let bad = |m: String| ConvertError::Invalid(format!("safetensors: {m}"));
        let head: [u8; 8] =
            bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("file too short".into()))?;
        let n = u64::from_le_bytes(head);
        if n > MAX_HEADER || 8 + n > bytes.len() as u64 {
            return Err(bad(format!("header length {n} does not fit the file")));
        }
        let data_start = 8 + n as usize;
        let mut raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..data_start]).map_err(|e| bad(format!("header: {e}")))?;
        raw.remove("__metadata__");
        let data_len = (bytes.len() - data_start) as u64;
        let mut entries = BTreeMap::new();
        for (name, v) in raw {
            let e: Entry = serde_json::from_value(v).map_err(|e| bad(format!("tensor {name:?}: {e}")))?;
            let [start, end] = e.data_offsets;
            let width = dtype_width(&e.dtype).ok_or_else(|| bad(format!("tensor {name:?}: dtype {}", e.dtype)))?;
            let count = e.shape.iter().try_fold(1u64, |a, d| a.checked_mul(*d));
            let size = count.and_then(|c| c.checked_mul(width));
            if start > end || end > data_len || size != Some(end - start) {
                return Err(bad(format!(
                    "tensor {name:?}: byte range {start}..{end} does not match its shape or the file"
                )));
            }
            entries.insert(name, e);
        }
        Ok(Safetensors { bytes, data_start, entries })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The tensor `name` as f32 (from F32, F16 or BF16).
    pub fn get(&self, name: &str) -> Result<Tensor, ConvertError> {
        let e = self.entries.get(name).ok_or_else(|| ConvertError::Invalid(format!("tensor {name} is missing")))?;
        let [start, end] = e.data_offsets;
        let data = &self.bytes[self.data_start + start as usize..self.data_start + end as usize];
        let values = match e.dtype.as_str() {
            "F32" => data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            "F16" => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            "BF16" => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => return Err(ConvertError::Invalid(format!("tensor {name}: dtype {other} is not a float type"))),
        };
        Ok(Tensor { shape: e.shape.clone(), values })
    }
}

fn dtype_width(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_f32_and_f16() {
        let mut data = Vec::new();
        data.extend_from_slice(&1.5f32.to_le_bytes());
        data.extend_from_slice(&(-2.0f32).to_le_bytes());
        data.extend_from_slice(&half::f16::from_f32(0.25).to_le_bytes());
        let header = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[1,1],"data_offsets":[8,10]}}"#;
        let st = Safetensors::parse(file(header, &data)).unwrap();
        assert_eq!(st.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(st.get("a").unwrap().values, [1.5, -2.0]);
        assert_eq!(st.get("b").unwrap().values, [0.25]);
        assert_eq!(st.get("b").unwrap().shape, [1, 1]);
    }

    #[test]
    fn hostile_headers_are_errors() {
        let data = [0u8; 8];
        for header in [
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
            r#"{"a":{"dtype":"X9","shape":[2],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}}"#,
            r#"not json"#,
        ] {
            assert!(Safetensors::parse(file(header, &data)).is_err(), "{header}");
        }
        assert!(Safetensors::parse(vec![1, 2, 3]).is_err());
        assert!(Safetensors::parse(u64::MAX.to_le_bytes().to_vec()).is_err());
    }
}
