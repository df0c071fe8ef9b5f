//! A GGUF v3 writer, for the test models and adapters the project generates itself.

use std::io::{self, Write};

use crate::types::GgmlType;
use crate::value::{ArrayValue, MetaValue};

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    kind: GgmlType,
    data: Vec<u8>,
}

/// Collects metadata and tensors, then writes a complete file with [`GgufWriter::write_to`].
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor>,
    alignment: u64,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter { metadata: Vec::new(), tensors: Vec::new(), alignment: 32 }
    }

    /// Sets `key`, replacing an earlier value of the same key.
    pub fn set(&mut self, key: &str, value: MetaValue) -> &mut Self {
        if key == "general.alignment" {
            if let MetaValue::U32(a) = value {
                assert!(a.is_power_of_two(), "alignment must be a power of two");
                self.alignment = a.into();
            }
        }
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    /// Adds a tensor whose data is already encoded as `kind`. `dims` are ggml order (`ne[0]` first).
    ///
    /// # Panics
    /// If `data` does not have the size `kind` and `dims` imply: that is a bug in the caller.
    pub fn add_tensor(&mut self, name: &str, dims: &[u64], kind: GgmlType, data: Vec<u8>) -> &mut Self {
        let elements: u64 = dims.iter().product();
        let expected = elements / kind.block_elements() * kind.block_bytes();
        assert_eq!(data.len() as u64, expected, "tensor {name}: wrong data size");
        self.tensors.push(PendingTensor { name: name.to_string(), dims: dims.to_vec(), kind, data });
        self
    }

    /// Adds an F32 tensor.
    pub fn add_f32(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_tensor(name, dims, GgmlType::F32, data)
    }

    /// Adds a tensor quantised to Q8_0 (`dims[0]` must be a multiple of 32).
    pub fn add_q8_0(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        self.add_tensor(name, dims, GgmlType::Q8_0, quantize_q8_0(values))
    }

    /// Writes the whole file.
    /// The whole file in memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out).expect("writing to a Vec cannot fail");
        out
    }

    pub fn write_to<W: Write>(&self, mut w: W) -> io::Result<()> {
        w.write_all(crate::MAGIC)?;
        w.write_all(&3u32.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        let mut pos = 24u64;
        for (key, value) in &self.metadata {
            pos += write_string(&mut w, key)?;
            pos += write_value(&mut w, value)?;
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            pos += write_string(&mut w, &t.name)?;
            w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                w.write_all(&d.to_le_bytes())?;
            }
            w.write_all(&t.kind.id().to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
            pos += 4 + 8 * t.dims.len() as u64 + 4 + 8;
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).next_multiple_of(self.alignment);
        }
        zeros(&mut w, pos.next_multiple_of(self.alignment) - pos)?;
        let mut cursor = 0u64;
        for (t, off) in self.tensors.iter().zip(offsets) {
            zeros(&mut w, off - cursor)?;
            w.write_all(&t.data)?;
            cursor = off + t.data.len() as u64;
        }
        w.flush()
    }
}

fn zeros<W: Write>(w: &mut W, n: u64) -> io::Result<()> {
    w.write_all(&vec![0u8; n as usize])
}

fn write_string<W: Write>(w: &mut W, s: &str) -> io::Result<u64> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())?;
    Ok(8 + s.len() as u64)
}

/// The little-endian bytes a GGUF file stores for a number or bool, or for the elements of an
/// array of them (without the array's type and length); `None` for strings and arrays of strings
/// or arrays. For handing values to code that reads GGUF's in-memory form (llama.cpp's `gguf_set_*`).
pub fn raw_bytes(v: &MetaValue) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match v {
        MetaValue::String(_) => return None,
        MetaValue::Array(ArrayValue::String(_) | ArrayValue::Array(_)) => return None,
        MetaValue::Array(a) => {
            write_array(&mut out, a).expect("writing to a Vec cannot fail");
            out.drain(..12);
        }
        _ => {
            write_value(&mut out, v).expect("writing to a Vec cannot fail");
            out.drain(..4);
        }
    }
    Some(out)
}

/// Writes the type tag and the value; returns bytes written.
fn write_value<W: Write>(w: &mut W, v: &MetaValue) -> io::Result<u64> {
    w.write_all(&v.type_id().to_le_bytes())?;
    let body = match v {
        MetaValue::U8(x) => put(w, &x.to_le_bytes())?,
        MetaValue::I8(x) => put(w, &x.to_le_bytes())?,
        MetaValue::U16(x) => put(w, &x.to_le_bytes())?,
        MetaValue::I16(x) => put(w, &x.to_le_bytes())?,
        MetaValue::U32(x) => put(w, &x.to_le_bytes())?,
        MetaValue::I32(x) => put(w, &x.to_le_bytes())?,
        MetaValue::F32(x) => put(w, &x.to_le_bytes())?,
        MetaValue::Bool(x) => put(w, &[u8::from(*x)])?,
        MetaValue::String(s) => write_string(w, s)?,
        MetaValue::Array(a) => write_array(w, a)?,
        MetaValue::U64(x) => put(w, &x.to_le_bytes())?,
        MetaValue::I64(x) => put(w, &x.to_le_bytes())?,
        MetaValue::F64(x) => put(w, &x.to_le_bytes())?,
    };
    Ok(4 + body)
}

fn put<W: Write>(w: &mut W, b: &[u8]) -> io::Result<u64> {
    w.write_all(b)?;
    Ok(b.len() as u64)
}

/// Writes an array's element type, length and elements; returns bytes written.
fn write_array<W: Write>(w: &mut W, a: &ArrayValue) -> io::Result<u64> {
    w.write_all(&a.element_type_id().to_le_bytes())?;
    w.write_all(&(a.len() as u64).to_le_bytes())?;
    let mut n = 12;
    macro_rules! each {
        ($v:expr, $f:expr) => {
            for x in $v {
                n += $f(w, x)?;
            }
        };
    }
    match a {
        ArrayValue::U8(v) => each!(v, |w: &mut W, x: &u8| put(w, &x.to_le_bytes())),
        ArrayValue::I8(v) => each!(v, |w: &mut W, x: &i8| put(w, &x.to_le_bytes())),
        ArrayValue::U16(v) => each!(v, |w: &mut W, x: &u16| put(w, &x.to_le_bytes())),
        ArrayValue::I16(v) => each!(v, |w: &mut W, x: &i16| put(w, &x.to_le_bytes())),
        ArrayValue::U32(v) => each!(v, |w: &mut W, x: &u32| put(w, &x.to_le_bytes())),
        ArrayValue::I32(v) => each!(v, |w: &mut W, x: &i32| put(w, &x.to_le_bytes())),
        ArrayValue::F32(v) => each!(v, |w: &mut W, x: &f32| put(w, &x.to_le_bytes())),
        ArrayValue::Bool(v) => each!(v, |w: &mut W, x: &bool| put(w, &[u8::from(*x)])),
        ArrayValue::String(v) => each!(v, |w: &mut W, x: &String| write_string(w, x)),
        ArrayValue::Array(v) => each!(v, |w: &mut W, x: &ArrayValue| write_array(w, x)),
        ArrayValue::U64(v) => each!(v, |w: &mut W, x: &u64| put(w, &x.to_le_bytes())),
        ArrayValue::I64(v) => each!(v, |w: &mut W, x: &i64| put(w, &x.to_le_bytes())),
        ArrayValue::F64(v) => each!(v, |w: &mut W, x: &f64| put(w, &x.to_le_bytes())),
    }
    Ok(n)
}

/// Quantises to ggml's Q8_0: blocks of 32 values, one f16 scale and 32 signed bytes each.
///
/// # Panics
/// If `values.len()` is not a multiple of 32.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    assert!(values.len().is_multiple_of(32), "Q8_0 needs a multiple of 32 values");
    let mut out = Vec::with_capacity(values.len() / 32 * 34);
    for block in values.chunks_exact(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8 as u8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bytes_are_the_stored_little_endian_values_without_headers() {
        assert_eq!(raw_bytes(&MetaValue::U32(0x0102_0304)), Some(vec![4, 3, 2, 1]));
        assert_eq!(raw_bytes(&MetaValue::Bool(true)), Some(vec![1]));
        assert_eq!(raw_bytes(&MetaValue::F32(1.0)), Some(1.0f32.to_le_bytes().to_vec()));
        assert_eq!(
            raw_bytes(&MetaValue::Array(ArrayValue::I32(vec![1, -1]))),
            Some(vec![1, 0, 0, 0, 255, 255, 255, 255])
        );
        assert_eq!(raw_bytes(&MetaValue::Array(ArrayValue::U8(vec![7, 8]))), Some(vec![7, 8]));
        assert_eq!(raw_bytes(&MetaValue::String("x".into())), None);
        assert_eq!(raw_bytes(&MetaValue::Array(ArrayValue::String(vec!["x".into()]))), None);
        assert_eq!(MetaValue::F64(0.0).type_id(), 12);
        assert_eq!(ArrayValue::Bool(vec![]).element_type_id(), 7);
    }
}
