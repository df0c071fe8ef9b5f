//! The bounded GGUF reader.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::types::GgmlType;
use crate::value::{ArrayValue, MetaValue};

/// Bounds on what a file may ask the reader to allocate. The defaults admit every real model we
/// know of (the largest vocabularies have about 262k tokens, the largest MoE models tens of
/// thousands of tensors) with a wide margin.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_tensors: u64,
    pub max_kv: u64,
    pub max_string_len: u64,
    pub max_array_len: u64,
    pub max_array_depth: u32,
    /// Header + metadata + tensor index together.
    pub max_header_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tensors: 1 << 20,
            max_kv: 1 << 16,
            max_string_len: 16 << 20,
            max_array_len: 1 << 24,
            max_array_depth: 3,
            max_header_bytes: 256 << 20,
        }
    }
}

/// Why a file is not a usable GGUF file. Every variant says what was wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file (bad magic)")]
    BadMagic,
    #[error("unsupported GGUF version {0} (only versions 2 and 3 are supported)")]
    UnsupportedVersion(u32),
    #[error("file is truncated: needs {needed} more bytes at offset {offset} while reading {what}")]
    Truncated { offset: u64, needed: u64, what: String },
    #[error("{what} is {value}, over the limit of {limit}")]
    OverLimit { what: String, value: u64, limit: u64 },
    #[error("metadata key {key:?} has unknown value type {kind}")]
    UnknownValueType { key: String, kind: u32 },
    #[error("duplicate {what} {name:?}")]
    Duplicate { what: &'static str, name: String },
    #[error("general.alignment must be a non-zero power of two that fits in u32, got {0}")]
    BadAlignment(String),
    #[error("tensor {name:?}: {problem}")]
    BadTensor { name: String, problem: String },
    #[error("I/O error reading GGUF: {0}")]
    Io(#[from] io::Error),
}

/// One entry of the tensor index.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// `ne[0]` first, as in ggml.
    pub dims: Vec<u64>,
    pub kind: GgmlType,
    /// Offset of the data relative to [`Gguf::data_offset`].
    pub offset: u64,
    /// Bytes of data, computed from the type and dimensions.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        // Checked when the index was read.
        self.dims.iter().product()
    }
}

/// The parsed header and index of a GGUF file.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub version: u32,
    /// Key-values in file order.
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset where tensor data starts.
    pub data_offset: u64,
}

impl Gguf {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(MetaValue::as_str)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(MetaValue::as_u64)
    }

    /// `general.architecture`, e.g. `llama`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// `<arch>.<suffix>` as an integer, e.g. `arch_u64("context_length")`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        self.get_u64(&format!("{}.{suffix}", self.architecture()?))
    }

    /// Total number of weights over all tensors.
    pub fn parameter_count(&self) -> u64 {
        self.tensors.iter().map(|t| t.elements()).fold(0u64, u64::saturating_add)
    }

    /// The quantisation name: `general.file_type` if it is known, else the most common tensor
    /// type among multi-dimensional tensors (the way a file without the key is usually labelled).
    pub fn file_type(&self) -> Option<String> {
        if let Some(name) = self.get_u64("general.file_type").and_then(crate::file_type_name) {
            return Some(name.to_string());
        }
        let mut counts: Vec<(GgmlType, usize)> = Vec::new();
        for t in self.tensors.iter().filter(|t| t.dims.len() > 1) {
            match counts.iter_mut().find(|(k, _)| *k == t.kind) {
                Some((_, n)) => *n += 1,
                None => counts.push((t.kind, 1)),
            }
        }
        counts.into_iter().max_by_key(|(_, n)| *n).map(|(k, _)| k.name().to_string())
    }
}

/// Reads the header and index of the GGUF file at `path`.
pub fn read_path(path: &Path) -> Result<Gguf, GgufError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    read(BufReader::with_capacity(1 << 16, file), len, &Limits::default())
}

/// Reads a GGUF file held in memory.
pub fn read_bytes(data: &[u8]) -> Result<Gguf, GgufError> {
    read(data, data.len() as u64, &Limits::default())
}

/// Reads the header and index from `r`, which yields a file of `file_len` bytes.
pub fn read<R: Read>(r: R, file_len: u64, limits: &Limits) -> Result<Gguf, GgufError> {
    let mut c = Cursor { inner: r, pos: 0, len: file_len, limits };
    c.read_file()
}

struct Cursor<'a, R> {
    inner: R,
    pos: u64,
    len: u64,
    limits: &'a Limits,
}

fn over(what: impl Into<String>, value: u64, limit: u64) -> GgufError {
    GgufError::OverLimit { what: what.into(), value, limit }
}

impl<R: Read> Cursor<'_, R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Fails unless `n` more bytes exist in the file and stay within the header budget. Called
    /// before every allocation whose size comes from the file.
    fn need(&self, n: u64, what: &str) -> Result<(), GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated { offset: self.pos, needed: n, what: what.to_string() });
        }
        let end = self.pos.saturating_add(n);
        if end > self.limits.max_header_bytes {
            return Err(over("GGUF header size", end, self.limits.max_header_bytes));
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        self.need(N as u64, what)?;
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf).map_err(|e| self.eof(e, N as u64, what))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn eof(&self, e: io::Error, needed: u64, what: &str) -> GgufError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            GgufError::Truncated { offset: self.pos, needed, what: what.to_string() }
        } else {
            GgufError::Io(e)
        }
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        if len > self.limits.max_string_len {
            return Err(over(format!("length of {what}"), len, self.limits.max_string_len));
        }
        self.need(len, what)?;
        let mut buf = vec![0u8; len as usize];
        self.inner.read_exact(&mut buf).map_err(|e| self.eof(e, len, what))?;
        self.pos += len;
        Ok(match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn read_file(&mut self) -> Result<Gguf, GgufError> {
        let magic: [u8; 4] = self.bytes("magic").map_err(|_| GgufError::BadMagic)?;
        if &magic != crate::MAGIC {
            return Err(GgufError::BadMagic);
        }
        let version = self.u32("version")?;
        if !(2..=3).contains(&version) {
            // A big-endian file shows up here as a huge version number.
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = self.u64("tensor count")?;
        if n_tensors > self.limits.max_tensors {
            return Err(over("tensor count", n_tensors, self.limits.max_tensors));
        }
        let n_kv = self.u64("metadata count")?;
        if n_kv > self.limits.max_kv {
            return Err(over("metadata count", n_kv, self.limits.max_kv));
        }

        // Each key-value takes at least 8 (key length) + 4 (type) + 1 bytes, so a count the file
        // cannot hold is refused before anything is reserved.
        self.need(n_kv.saturating_mul(13), "metadata")?;
        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut keys = HashSet::new();
        for _ in 0..n_kv {
            let key = self.string("metadata key")?;
            let kind = self.u32("metadata value type")?;
            let value = self.value(&key, kind, 0)?;
            if !keys.insert(key.clone()) {
                return Err(GgufError::Duplicate { what: "metadata key", name: key });
            }
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => 32,
            Some((_, MetaValue::U32(a))) if a.is_power_of_two() => u64::from(*a),
            Some((_, v)) => return Err(GgufError::BadAlignment(format!("{v:?}"))),
        };

        // A tensor entry is at least 8 (name length) + 4 (dims) + 8 (one dim) + 4 (type) + 8 bytes.
        self.need(n_tensors.saturating_mul(32), "tensor index")?;
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut names = HashSet::new();
        for _ in 0..n_tensors {
            let t = self.tensor_info()?;
            if !names.insert(t.name.clone()) {
                return Err(GgufError::Duplicate { what: "tensor", name: t.name });
            }
            tensors.push(t);
        }

        let data_offset =
            self.pos.checked_next_multiple_of(alignment).filter(|off| *off <= self.len).ok_or_else(|| {
                GgufError::Truncated { offset: self.pos, needed: alignment, what: "padding before tensor data".into() }
            })?;
        let data_len = self.len - data_offset;
        for t in &tensors {
            if t.offset % alignment != 0 {
                return Err(GgufError::BadTensor {
                    name: t.name.clone(),
                    problem: format!("offset {} is not a multiple of the alignment {alignment}", t.offset),
                });
            }
            let end = t.offset.checked_add(t.size);
            if end.is_none_or(|end| end > data_len) {
                return Err(GgufError::BadTensor {
                    name: t.name.clone(),
                    problem: format!(
                        "data at offset {} with size {} lies beyond the end of the file ({data_len} bytes of tensor data)",
                        t.offset, t.size
                    ),
                });
            }
        }

        Ok(Gguf { version, metadata, tensors, alignment, data_offset })
    }

    fn tensor_info(&mut self) -> Result<TensorInfo, GgufError> {
        let name = self.string("tensor name")?;
        let bad = |problem: String| GgufError::BadTensor { name: name.clone(), problem };
        let n_dims = self.u32("tensor dimension count")?;
        if !(1..=4).contains(&n_dims) {
            return Err(bad(format!("has {n_dims} dimensions (1 to 4 allowed)")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        let mut elements: u64 = 1;
        for _ in 0..n_dims {
            let d = self.u64("tensor dimension")?;
            // ggml stores dimensions as int64, so the product must fit in i64 too.
            elements = elements
                .checked_mul(d)
                .filter(|e| *e <= i64::MAX as u64)
                .ok_or_else(|| bad("element count overflows".into()))?;
            dims.push(d);
        }
        let type_id = self.u32("tensor type")?;
        let kind = GgmlType::from_id(type_id).ok_or_else(|| bad(format!("unknown ggml type {type_id}")))?;
        if dims[0] % kind.block_elements() != 0 {
            return Err(bad(format!(
                "first dimension {} is not a multiple of the {} block size {}",
                dims[0],
                kind.name(),
                kind.block_elements()
            )));
        }
        let size = (elements / kind.block_elements())
            .checked_mul(kind.block_bytes())
            .ok_or_else(|| bad("byte size overflows".into()))?;
        let offset = self.u64("tensor offset")?;
        Ok(TensorInfo { name, dims, kind, offset, size })
    }

    fn value(&mut self, key: &str, kind: u32, depth: u32) -> Result<MetaValue, GgufError> {
        Ok(match kind {
            0 => MetaValue::U8(u8::from_le_bytes(self.bytes(key)?)),
            1 => MetaValue::I8(i8::from_le_bytes(self.bytes(key)?)),
            2 => MetaValue::U16(u16::from_le_bytes(self.bytes(key)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.bytes(key)?)),
            4 => MetaValue::U32(u32::from_le_bytes(self.bytes(key)?)),
            5 => MetaValue::I32(i32::from_le_bytes(self.bytes(key)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.bytes(key)?)),
            7 => MetaValue::Bool(self.bytes::<1>(key)?[0] != 0),
            8 => MetaValue::String(self.string(key)?),
            9 => MetaValue::Array(self.array(key, depth)?),
            10 => MetaValue::U64(u64::from_le_bytes(self.bytes(key)?)),
            11 => MetaValue::I64(i64::from_le_bytes(self.bytes(key)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.bytes(key)?)),
            _ => return Err(GgufError::UnknownValueType { key: key.to_string(), kind }),
        })
    }

    fn array(&mut self, key: &str, depth: u32) -> Result<ArrayValue, GgufError> {
        if depth >= self.limits.max_array_depth {
            return Err(over(
                format!("array nesting depth of {key:?}"),
                u64::from(depth) + 1,
                self.limits.max_array_depth.into(),
            ));
        }
        let kind = self.u32(key)?;
        let len = self.u64(key)?;
        if len > self.limits.max_array_len {
            return Err(over(format!("length of array {key:?}"), len, self.limits.max_array_len));
        }
        let elem_size: u64 = match kind {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => 8,  // at least the length prefix
            9 => 12, // at least the type and length
            _ => return Err(GgufError::UnknownValueType { key: key.to_string(), kind }),
        };
        self.need(len.saturating_mul(elem_size), key)?;
        let n = len as usize;

        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(<$t>::from_le_bytes(self.bytes(key)?));
                }
                ArrayValue::$variant(v)
            }};
        }
        Ok(match kind {
            0 => fixed!(U8, u8),
            1 => fixed!(I8, i8),
            2 => fixed!(U16, u16),
            3 => fixed!(I16, i16),
            4 => fixed!(U32, u32),
            5 => fixed!(I32, i32),
            6 => fixed!(F32, f32),
            7 => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.bytes::<1>(key)?[0] != 0);
                }
                ArrayValue::Bool(v)
            }
            8 => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.string(key)?);
                }
                ArrayValue::String(v)
            }
            9 => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array(key, depth + 1)?);
                }
                ArrayValue::Array(v)
            }
            10 => fixed!(U64, u64),
            11 => fixed!(I64, i64),
            _ => fixed!(F64, f64),
        })
    }
}
