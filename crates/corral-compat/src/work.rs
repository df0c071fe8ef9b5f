//! The translation under construction: the header the handlers read and edit (copied at the
//! first edit), and the record of every edit they make (the [`Translation`] handed to llama.cpp).
//!
//! Handlers read values after their own edits (a key copied under a new prefix, then read back),
//! so each edit is applied to the copy as it is recorded.

use std::borrow::Cow;

use corral_gguf::{ArrayValue, GgmlType, Gguf, MetaValue, TensorInfo};

use crate::{Edit, Translation};

pub(crate) struct Work<'a> {
    /// Borrowed until the first edit: a file no handler changes is never copied.
    pub(crate) g: Cow<'a, Gguf>,
    t: Translation,
}

/// Sets `key` in a metadata list, in place when it exists.
pub(crate) fn put(metadata: &mut Vec<(String, MetaValue)>, key: &str, value: MetaValue) {
    match metadata.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => metadata.push((key.to_string(), value)),
    }
}

/// Cuts an array to its first `n` entries (nested arrays are left alone).
pub(crate) fn truncate(a: &mut ArrayValue, n: usize) {
    match a {
        ArrayValue::U8(v) => v.truncate(n),
        ArrayValue::I8(v) => v.truncate(n),
        ArrayValue::U16(v) => v.truncate(n),
        ArrayValue::I16(v) => v.truncate(n),
        ArrayValue::U32(v) => v.truncate(n),
        ArrayValue::I32(v) => v.truncate(n),
        ArrayValue::F32(v) => v.truncate(n),
        ArrayValue::Bool(v) => v.truncate(n),
        ArrayValue::String(v) => v.truncate(n),
        ArrayValue::U64(v) => v.truncate(n),
        ArrayValue::I64(v) => v.truncate(n),
        ArrayValue::F64(v) => v.truncate(n),
        ArrayValue::Array(_) => {}
    }
}

/// Bytes of a tensor of `kind` with these dimensions, if they fit its block size.
pub(crate) fn size_of(kind: GgmlType, dims: &[u64]) -> Option<u64> {
    let elements = dims.iter().try_fold(1u64, |n, d| n.checked_mul(*d))?;
    let first = *dims.first()?;
    if kind.block_elements() == 0 || first % kind.block_elements() != 0 {
        return None;
    }
    (elements / kind.block_elements()).checked_mul(kind.block_bytes())
}

impl<'a> Work<'a> {
    pub(crate) fn new(g: &'a Gguf) -> Work<'a> {
        Work { g: Cow::Borrowed(g), t: Translation::default() }
    }

    pub(crate) fn finish(mut self) -> Translation {
        if self.t.handler.is_empty() {
            self.t.handler = "unnamed";
        }
        self.t
    }

    /// Names the handler that matched.
    pub(crate) fn handler(&mut self, name: &'static str) {
        self.t.handler = name;
    }

    pub(crate) fn arch(&self) -> String {
        self.g.architecture().unwrap_or_default().to_string()
    }

    // ---- reading ----

    pub(crate) fn has(&self, key: &str) -> bool {
        self.g.get(key).is_some()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&MetaValue> {
        self.g.get(key)
    }

    pub(crate) fn str_is(&self, key: &str, want: &str) -> bool {
        self.g.get_str(key) == Some(want)
    }

    pub(crate) fn str_contains(&self, key: &str, needle: &str) -> bool {
        self.g.get_str(key).is_some_and(|s| s.contains(needle))
    }

    /// Missing, empty or `default` (what older converters wrote for "no pre-tokenizer").
    pub(crate) fn str_missing_or_default(&self, key: &str) -> bool {
        match self.g.get(key) {
            None => true,
            Some(MetaValue::String(s)) => s.is_empty() || s == "default",
            Some(_) => false,
        }
    }

    /// A non-negative integer key read as u32 (u32 or i32 in the file, as converters differ).
    pub(crate) fn u32_of(&self, key: &str) -> Option<u32> {
        match self.g.get(key)? {
            MetaValue::U32(v) => Some(*v),
            MetaValue::I32(v) => u32::try_from(*v).ok(),
            _ => None,
        }
    }

    /// Length of an array key.
    pub(crate) fn array_len(&self, key: &str) -> Option<usize> {
        self.g.get(key)?.as_array().map(ArrayValue::len)
    }

    /// The `i`th entry of the token list equals `want`.
    pub(crate) fn token_is(&self, i: usize, want: &str) -> bool {
        matches!(self.g.get("tokenizer.ggml.tokens"), Some(MetaValue::Array(ArrayValue::String(t))) if t.get(i).map(String::as_str) == Some(want))
    }

    /// The id of the token `want` in the token list, if it is there.
    pub(crate) fn token_index(&self, want: &str) -> Option<u64> {
        match self.g.get("tokenizer.ggml.tokens")? {
            MetaValue::Array(ArrayValue::String(t)) => t.iter().position(|s| s == want).map(|i| i as u64),
            _ => None,
        }
    }

    pub(crate) fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.g.tensors.iter().find(|t| t.name == name)
    }

    pub(crate) fn any_tensor_with_prefix(&self, prefix: &str) -> bool {
        self.g.tensors.iter().any(|t| t.name.starts_with(prefix))
    }

    /// Dimension `i` of a tensor (`ne[i]`), if the tensor exists and has it.
    pub(crate) fn dim(&self, name: &str, i: usize) -> Option<u64> {
        self.tensor(name)?.dims.get(i).copied()
    }

    // ---- editing ----

    pub(crate) fn set(&mut self, key: &str, value: MetaValue) {
        put(&mut self.g.to_mut().metadata, key, value.clone());
        self.t.edits.push(Edit::Set(key.to_string(), value));
    }

    pub(crate) fn set_str(&mut self, key: &str, value: &str) {
        self.set(key, MetaValue::String(value.to_string()));
    }

    pub(crate) fn set_u32(&mut self, key: &str, value: u32) {
        self.set(key, MetaValue::U32(value));
    }

    pub(crate) fn set_if_missing(&mut self, key: &str, value: MetaValue) {
        if !self.has(key) {
            self.set(key, value);
        }
    }

    /// Copies `from` to `to`, when `from` exists.
    pub(crate) fn copy(&mut self, from: &str, to: &str) {
        if let Some(v) = self.g.get(from).cloned() {
            self.set(to, v);
        }
    }

    pub(crate) fn remove(&mut self, key: &str) {
        if self.has(key) {
            self.g.to_mut().metadata.retain(|(k, _)| k != key);
            self.t.edits.push(Edit::Remove(key.to_string()));
        }
    }

    /// Loads the file as `arch`: `general.architecture` changes and every `<old>.` key moves to
    /// `<arch>.` (a key already present under the new prefix is kept).
    pub(crate) fn set_arch(&mut self, arch: &str) {
        let old = format!("{}.", self.arch());
        let new = format!("{arch}.");
        let moved: Vec<(String, MetaValue)> =
            self.g.metadata.iter().filter(|(k, _)| k.starts_with(&old)).cloned().collect();
        for (key, value) in moved {
            let renamed = format!("{new}{}", &key[old.len()..]);
            if !self.has(&renamed) {
                self.set(&renamed, value);
            }
            self.remove(&key);
        }
        put(&mut self.g.to_mut().metadata, "general.architecture", MetaValue::String(arch.to_string()));
        self.t.architecture = Some(arch.to_string());
    }

    pub(crate) fn rename_tensor(&mut self, from: &str, to: &str) {
        if self.tensor(to).is_some() {
            return;
        }
        if let Some(t) = self.g.to_mut().tensors.iter_mut().find(|t| t.name == from) {
            t.name = to.to_string();
            self.t.renames.push((from.to_string(), to.to_string()));
        }
    }

    /// Renames every tensor whose name contains `needle`, replacing its first occurrence; a name
    /// that already has `replacement` (`attn_output` for `attn_out`) is left as it is.
    pub(crate) fn rename_tensors_containing(&mut self, needle: &str, replacement: &str) {
        let names: Vec<String> = self
            .g
            .tensors
            .iter()
            .filter(|t| t.name.contains(needle) && !t.name.contains(replacement))
            .map(|t| t.name.clone())
            .collect();
        for name in names {
            let to = name.replacen(needle, replacement, 1);
            self.rename_tensor(&name, &to);
        }
    }

    /// Gives a tensor a smaller shape (the loader reads its first bytes only).
    pub(crate) fn shrink(&mut self, name: &str, dims: Vec<u64>) {
        let Some(t) = self.g.to_mut().tensors.iter_mut().find(|t| t.name == name) else { return };
        let Some(size) = size_of(t.kind, &dims) else { return };
        if size > t.size || dims == t.dims {
            return;
        }
        t.dims = dims.clone();
        t.size = size;
        self.t.reshapes.push((name.to_string(), dims));
    }

    /// Makes `target` (2-D) the concatenation, along its second dimension, of itself preceded by
    /// the `before` tensors (same type and row width): its bytes are theirs then its own, read
    /// from the file at load. The parts are hidden. Nothing happens unless every part fits.
    pub(crate) fn fuse_rows(&mut self, before: &[&str], target: &str) -> bool {
        let Some(t) = self.tensor(target).cloned() else { return false };
        let mut parts = Vec::new();
        for name in before {
            match self.tensor(name) {
                Some(p) if p.kind == t.kind && p.dims.len() == 2 && t.dims.len() == 2 && p.dims[0] == t.dims[0] => {
                    parts.push(p.clone())
                }
                _ => return false,
            }
        }
        parts.push(t.clone());
        let rows = parts.iter().try_fold(0u64, |n, p| n.checked_add(p.dims[1]));
        let Some(rows) = rows else { return false };
        let ranges: Vec<(u64, u64)> =
            parts.iter().map(|p| (self.g.data_offset.saturating_add(p.offset), p.size)).collect();
        let dims = vec![t.dims[0], rows];
        if size_of(t.kind, &dims).is_none() {
            return false;
        }
        self.hide_where(|name| before.contains(&name));
        self.assemble(target, dims, ranges)
    }

    /// Where a tensor's bytes are in the file: (absolute offset, size).
    pub(crate) fn range(&self, name: &str) -> Option<(u64, u64)> {
        let t = self.tensor(name)?;
        Some((self.g.data_offset.saturating_add(t.offset), t.size))
    }

    /// Gives tensor `name` (its type kept) the shape `dims` and, at load, the bytes of `ranges` of
    /// the file one after the other: the general form of [`Work::fuse_rows`], for tensors that are
    /// pieces of others or interleavings of them. Nothing happens unless the ranges fill that shape
    /// exactly.
    pub(crate) fn assemble(&mut self, name: &str, dims: Vec<u64>, ranges: Vec<(u64, u64)>) -> bool {
        let Some(kind) = self.tensor(name).map(|t| t.kind) else { return false };
        let Some(size) = size_of(kind, &dims) else { return false };
        if ranges.iter().try_fold(0u64, |n, r| n.checked_add(r.1)) != Some(size) {
            return false;
        }
        if let Some(t) = self.g.to_mut().tensors.iter_mut().find(|t| t.name == name) {
            t.dims = dims.clone();
            t.size = size;
        }
        self.t.reshapes.push((name.to_string(), dims));
        self.t.assembled.push((name.to_string(), ranges));
        true
    }

    /// Has an F16 tensor loaded as F32 (converted as it is read).
    pub(crate) fn promote_to_f32(&mut self, name: &str) {
        let Some(t) = self.g.to_mut().tensors.iter_mut().find(|t| t.name == name) else { return };
        if t.kind != GgmlType::F16 {
            return;
        }
        t.kind = GgmlType::F32;
        t.size *= 2;
        self.t.promoted.push(name.to_string());
    }

    /// Reorders the rows (second dimension) of a 2-D tensor as it is read: row `r` of the loaded
    /// tensor is row `source_row(r)` of the file's, one byte range per row. Nothing happens
    /// unless every row is whole blocks of its type and every source row exists.
    pub(crate) fn permute_rows(&mut self, name: &str, source_row: impl Fn(u64) -> u64) -> bool {
        let Some(t) = self.tensor(name).cloned().filter(|t| t.dims.len() == 2) else { return false };
        let Some(row_bytes) = size_of(t.kind, &t.dims[..1]) else { return false };
        let start = self.g.data_offset.saturating_add(t.offset);
        let mut ranges = Vec::new();
        for r in 0..t.dims[1] {
            let from = source_row(r);
            let at = from.checked_mul(row_bytes).and_then(|o| start.checked_add(o));
            match at {
                Some(at) if from < t.dims[1] => ranges.push((at, row_bytes)),
                _ => return false,
            }
        }
        self.assemble(name, t.dims, ranges)
    }

    /// Has `target`, an F32 vector as long as `source`'s rows, hold row `row` of `source` (2-D,
    /// of any type), converted to F32 at load. Nothing happens unless the shapes fit so.
    pub(crate) fn fill_with_row(&mut self, target: &str, source: &str, row: u64) -> bool {
        let (Some(t), Some(s)) = (self.tensor(target), self.tensor(source)) else { return false };
        let fits = s.dims.len() == 2
            && row < s.dims[1]
            && size_of(s.kind, &s.dims[..1]).is_some()
            && t.kind == GgmlType::F32
            && t.dims == s.dims[..1];
        if fits {
            self.t.rows_as_f32.push((target.to_string(), source.to_string(), row));
        }
        fits
    }

    /// Hides every tensor whose name starts with `prefix` from the text loader.
    pub(crate) fn hide_prefix(&mut self, prefix: &str) {
        self.hide_where(|name| name.starts_with(prefix));
    }

    /// Hides every tensor whose name `hide` picks.
    pub(crate) fn hide_where(&mut self, hide: impl Fn(&str) -> bool) {
        let hidden = &mut self.t.hidden;
        self.g.to_mut().tensors.retain(|t| {
            let keep = !hide(&t.name);
            if !keep {
                hidden.insert(t.name.clone());
            }
            keep
        });
    }

    /// Renames every tensor whose name ends with `old` to end with `new` instead.
    pub(crate) fn rename_suffix(&mut self, old: &str, new: &str) {
        let names: Vec<String> =
            self.g.tensors.iter().filter(|t| t.name.ends_with(old)).map(|t| t.name.clone()).collect();
        for name in names {
            let to = format!("{}{new}", &name[..name.len() - old.len()]);
            self.rename_tensor(&name, &to);
        }
    }

    /// Truncates an array key to `n` entries (when it is longer).
    pub(crate) fn truncate_array(&mut self, key: &str, n: usize) {
        let Some((_, MetaValue::Array(a))) = self.g.to_mut().metadata.iter_mut().find(|(k, _)| k == key) else {
            return;
        };
        if a.len() > n && !matches!(a, ArrayValue::Array(_)) {
            truncate(a, n);
            self.t.edits.push(Edit::Truncate(key.to_string(), n));
        }
    }

    /// An array of unsigned integers (u32 or i32 in the file) replaced by its largest value, or by
    /// `fallback` when all are 0: llama.cpp wants one number where Ollama wrote one per layer.
    pub(crate) fn collapse_to_max(&mut self, key: &str, fallback: u32) {
        let max = match self.g.get(key) {
            Some(MetaValue::Array(ArrayValue::U32(v))) => v.iter().copied().max().unwrap_or(0),
            Some(MetaValue::Array(ArrayValue::I32(v))) => v.iter().map(|x| (*x).max(0) as u32).max().unwrap_or(0),
            _ => return,
        };
        let value = if max == 0 { fallback } else { max };
        if value != 0 {
            self.set_u32(key, value);
        }
    }

    /// A three-entry M-RoPE section list from `from`, padded with a 0 into `to` (llama.cpp reads
    /// four).
    pub(crate) fn pad_sections(&mut self, from: &str, to: &str) {
        // In place, only a three-entry list changes; from another key, the first three are taken.
        let fits = |n: usize| if from == to { n == 3 } else { n >= 3 };
        let sections: Vec<i32> = match self.g.get(from) {
            Some(MetaValue::Array(ArrayValue::I32(v))) if fits(v.len()) => v.clone(),
            Some(MetaValue::Array(ArrayValue::U32(v))) if fits(v.len()) => v.iter().map(|x| *x as i32).collect(),
            _ => return,
        };
        self.set(to, MetaValue::Array(ArrayValue::I32(vec![sections[0], sections[1], sections[2], 0])));
    }
}
