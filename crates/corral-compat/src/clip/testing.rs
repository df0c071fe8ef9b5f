//! What the projector translations' tests share: a published fixture of the test kit, read
//! through its translation, must be the reference projector llama.cpp's converter writes for the
//! same tower, key for key and byte for byte.

use corral_gguf::{ArrayValue, GgmlType, Gguf, MetaValue, TensorInfo};

use crate::clip::translate_clip;
use crate::Translation;

/// A hand-written header holding `keys` and no tensors yet.
pub(super) fn with_keys<const N: usize>(keys: [(&str, MetaValue); N]) -> Gguf {
    let metadata = keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    Gguf { version: 3, metadata, tensors: Vec::new(), alignment: 32, data_offset: 0 }
}

/// Sets `key` in a hand-edited header.
pub(super) fn set(g: &mut Gguf, key: &str, value: MetaValue) {
    crate::work::put(&mut g.metadata, key, value);
}

/// The header of `file`, edited, through the projector translation.
pub(super) fn translated_after(file: &[u8], edit: &dyn Fn(&mut Gguf)) -> Option<Translation> {
    let mut g = corral_gguf::read_bytes(file).expect("a fixture parses");
    edit(&mut g);
    translate_clip(&g)
}

/// An I32 array value.
pub(super) fn i32s(v: &[i32]) -> MetaValue {
    MetaValue::Array(ArrayValue::I32(v.to_vec()))
}

/// Keys with their values (debug text: it shows the GGUF type too), sorted.
fn keys(g: &Gguf) -> Vec<(String, String)> {
    let mut keys: Vec<_> = g.metadata.iter().map(|(k, v)| (k.clone(), format!("{v:?}"))).collect();
    keys.sort();
    keys
}

/// The bytes the projector loader reads for `t`, a tensor of the header `tr` gives `g` (the
/// header of `file`): the ranges it is assembled from, its F16 data widened, the row of another
/// tensor it is filled with, or its own bytes.
pub(super) fn loaded(tr: &Translation, g: &Gguf, file: &[u8], t: &TensorInfo) -> Vec<u8> {
    let slice = |offset: u64, size: u64| &file[offset as usize..(offset + size) as usize];
    if let Some((_, ranges)) = tr.assembled.iter().find(|(name, _)| *name == t.name) {
        return ranges.iter().flat_map(|(offset, size)| slice(*offset, *size).to_vec()).collect();
    }
    if let Some((_, source, row)) = tr.rows_as_f32.iter().find(|(name, _, _)| *name == t.name) {
        let s = g.tensors.iter().find(|s| s.name == *source).unwrap();
        let row_bytes = s.size / s.dims[1];
        let data = slice(g.data_offset + s.offset + row * row_bytes, row_bytes);
        let values = corral_gguf::dequantize(s.kind, data, s.dims[0] as usize).unwrap();
        return values.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
    let start = g.data_offset + t.offset;
    if tr.promoted.contains(&t.name) {
        let n = (t.size / 4) as usize;
        let values = corral_gguf::dequantize(GgmlType::F16, slice(start, 2 * n as u64), n).unwrap();
        return values.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
    slice(start, t.size).to_vec()
}

/// Asserts that the published file `published` (architecture `arch`), translated, reads as the
/// projector `reference`: every key of the reference with its value and type (any other `clip.`
/// key is a published one moved under the new prefix, which `clip.cpp` does not read or reads as
/// the value it assumes), the same tensors with the same shapes and types, and the same bytes as
/// loaded. Returns the translation.
pub(super) fn assert_reads_as_reference(arch: &str, published: &[u8], reference: &[u8]) -> Translation {
    let (g, want) = (corral_gguf::read_bytes(published).unwrap(), corral_gguf::read_bytes(reference).unwrap());
    let tr = translate_clip(&g).expect("the fixture has a whole tower");
    let seen = tr.apply(&g);
    let (seen_keys, want_keys, published_keys) = (keys(&seen), keys(&want), keys(&g));
    let missing: Vec<_> = want_keys.iter().filter(|k| !seen_keys.contains(k)).collect();
    assert!(missing.is_empty(), "translated header lacks {missing:?}");
    let invented: Vec<_> = seen_keys
        .iter()
        .filter(|k| !want_keys.contains(k) && !published_keys.contains(k))
        .filter(|(key, value)| {
            let old = key.strip_prefix("clip.").map(|rest| format!("{arch}.{rest}"));
            !old.is_some_and(|old| published_keys.contains(&(old, value.clone())))
        })
        .collect();
    assert!(invented.is_empty(), "the translation wrote {invented:?}, which neither file has");
    let names = |g: &Gguf| {
        let mut names: Vec<String> = g.tensors.iter().map(|t| t.name.clone()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&seen), names(&want));
    for t in &seen.tensors {
        let r = want.tensors.iter().find(|r| r.name == t.name).unwrap();
        assert_eq!((&t.dims, t.kind), (&r.dims, r.kind), "{}", t.name);
        let start = (want.data_offset + r.offset) as usize;
        let expected = &reference[start..start + r.size as usize];
        assert!(loaded(&tr, &g, published, t) == expected, "{} is not the reference's", t.name);
    }
    tr
}
