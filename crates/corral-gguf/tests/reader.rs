//! The reader against files the writer produced, and against every kind of broken or hostile file
//! we could think of: each must be a clean error, never a panic or a huge allocation.

use corral_gguf::{read_bytes, ArrayValue, GgmlType, GgufError, GgufWriter, MetaValue};
use rand::{Rng, SeedableRng};

fn sample() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", MetaValue::String("llama".into()))
        .set("general.file_type", MetaValue::U32(7))
        .set("llama.context_length", MetaValue::U32(128))
        .set("llama.rope.freq_base", MetaValue::F32(10000.0))
        .set("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-5))
        .set("flag", MetaValue::Bool(true))
        .set("i64", MetaValue::I64(-5))
        .set("f64", MetaValue::F64(0.25))
        .set("tokens", MetaValue::Array(ArrayValue::String(vec!["<s>".into(), "a".into(), "ü".into()])))
        .set("scores", MetaValue::Array(ArrayValue::F32(vec![0.0, -1.5])))
        .set(
            "nested",
            MetaValue::Array(ArrayValue::Array(vec![ArrayValue::U8(vec![1, 2]), ArrayValue::I16(vec![-3])])),
        );
    let values: Vec<f32> = (0..64 * 2).map(|i| (i as f32 - 64.0) / 10.0).collect();
    w.add_q8_0("blk.0.attn_q.weight", &[64, 2], &values);
    w.add_f32("norm.weight", &[3], &[1.0, 2.0, 3.0]);
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    out
}

#[test]
fn round_trip_through_writer() {
    let bytes = sample();
    let g = read_bytes(&bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.architecture(), Some("llama"));
    assert_eq!(g.arch_u64("context_length"), Some(128));
    assert_eq!(g.file_type().as_deref(), Some("Q8_0"));
    assert_eq!(g.get("flag"), Some(&MetaValue::Bool(true)));
    assert_eq!(g.get("i64"), Some(&MetaValue::I64(-5)));
    assert_eq!(
        g.get("nested"),
        Some(&MetaValue::Array(ArrayValue::Array(vec![ArrayValue::U8(vec![1, 2]), ArrayValue::I16(vec![-3])])))
    );
    assert_eq!(g.get("tokens").unwrap().to_json(), serde_json::json!(["<s>", "a", "ü"]));
    assert_eq!(g.get("llama.attention.layer_norm_rms_epsilon").unwrap().to_json(), serde_json::json!(1e-5));
    assert_eq!(g.tensors.len(), 2);
    assert_eq!(g.tensors[0].kind, GgmlType::Q8_0);
    assert_eq!(g.tensors[0].size, 2 * 2 * 34);
    assert_eq!(g.tensors[1].offset % 32, 0);
    assert_eq!(g.parameter_count(), 131);
    assert_eq!(g.data_offset % 32, 0);
    // The F32 tensor's bytes are where the index says they are.
    let t = &g.tensors[1];
    let at = (g.data_offset + t.offset) as usize;
    assert_eq!(&bytes[at..at + 4], &1.0f32.to_le_bytes());
    assert_eq!(bytes.len() as u64, g.data_offset + t.offset + t.size);
}

#[test]
fn version_2_is_read() {
    let mut bytes = sample();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(read_bytes(&bytes).unwrap().version, 2);
}

#[test]
fn wrong_magic_and_versions() {
    assert!(matches!(read_bytes(b""), Err(GgufError::BadMagic)));
    assert!(matches!(read_bytes(b"GGU"), Err(GgufError::BadMagic)));
    assert!(matches!(read_bytes(b"GGML\x03\0\0\0"), Err(GgufError::BadMagic)));
    let mut bytes = sample();
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(matches!(read_bytes(&bytes), Err(GgufError::UnsupportedVersion(1))));
    // A big-endian v3 file.
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(read_bytes(&bytes), Err(GgufError::UnsupportedVersion(_))));
}

/// CVE-2024-39720 was a 4-byte file crashing Ollama; every prefix of a valid file must fail cleanly.
#[test]
fn every_truncation_is_an_error() {
    let bytes = sample();
    for len in 0..bytes.len() {
        let err = read_bytes(&bytes[..len]).expect_err(&format!("prefix of {len} bytes parsed"));
        assert!(
            matches!(err, GgufError::BadMagic | GgufError::Truncated { .. } | GgufError::BadTensor { .. }),
            "prefix {len}: {err}"
        );
    }
}

/// Builds a header by hand so each field can lie.
struct Raw(Vec<u8>);
impl Raw {
    fn new(n_tensors: u64, n_kv: u64) -> Self {
        let mut v = b"GGUF".to_vec();
        v.extend(3u32.to_le_bytes());
        v.extend(n_tensors.to_le_bytes());
        v.extend(n_kv.to_le_bytes());
        Raw(v)
    }
    fn u32(mut self, x: u32) -> Self {
        self.0.extend(x.to_le_bytes());
        self
    }
    fn u64(mut self, x: u64) -> Self {
        self.0.extend(x.to_le_bytes());
        self
    }
    fn str(self, s: &str) -> Self {
        let mut r = self.u64(s.len() as u64);
        r.0.extend(s.as_bytes());
        r
    }
    fn pad(mut self, n: usize) -> Self {
        self.0.extend(vec![0u8; n]);
        self
    }
    fn read(&self) -> GgufError {
        read_bytes(&self.0).expect_err("hostile file parsed")
    }
}

#[test]
fn absurd_counts_are_refused_before_allocating() {
    assert!(matches!(Raw::new(1 << 60, 0).read(), GgufError::OverLimit { .. }));
    assert!(matches!(Raw::new(0, 1 << 40).read(), GgufError::OverLimit { .. }));
    // Within the limits but more than the file could hold.
    assert!(matches!(Raw::new(1000, 0).read(), GgufError::Truncated { .. }));
    assert!(matches!(Raw::new(0, 1000).read(), GgufError::Truncated { .. }));
    // A key whose length is 2^63.
    assert!(matches!(Raw::new(0, 1).u64(1 << 63).pad(16).read(), GgufError::OverLimit { .. }));
    // A string value claiming 10 MB in a tiny file.
    assert!(matches!(Raw::new(0, 1).str("k").u32(8).u64(10_000_000).read(), GgufError::Truncated { .. }));
    // Arrays: 2^50 elements, and 1M u64s in a tiny file.
    assert!(matches!(Raw::new(0, 1).str("k").u32(9).u32(0).u64(1 << 50).read(), GgufError::OverLimit { .. }));
    assert!(matches!(Raw::new(0, 1).str("k").u32(9).u32(10).u64(1 << 20).read(), GgufError::Truncated { .. }));
    // Arrays nested deeper than the limit.
    let deep = Raw::new(0, 1).str("k").u32(9).u32(9).u64(1).u32(9).u64(1).u32(9).u64(1).u32(0).u64(0);
    assert!(matches!(deep.read(), GgufError::OverLimit { .. }));
}

#[test]
fn bad_metadata() {
    assert!(matches!(Raw::new(0, 1).str("k").u32(13).pad(8).read(), GgufError::UnknownValueType { .. }));
    let dup = Raw::new(0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(2);
    assert!(matches!(dup.read(), GgufError::Duplicate { .. }));
    for bad in [0u32, 3, 48] {
        let r = Raw::new(0, 1).str("general.alignment").u32(4).u32(bad);
        assert!(matches!(r.read(), GgufError::BadAlignment(_)), "alignment {bad}");
    }
    // Alignment given with the wrong type.
    let r = Raw::new(0, 1).str("general.alignment").u32(10).u64(32);
    assert!(matches!(r.read(), GgufError::BadAlignment(_)));
}

fn one_tensor(dims: &[u64], kind: u32, offset: u64, data: usize) -> Raw {
    let mut r = Raw::new(1, 0).str("t").u32(dims.len() as u32);
    for d in dims {
        r = r.u64(*d);
    }
    r = r.u32(kind).u64(offset);
    let header = r.0.len();
    r.pad(header.next_multiple_of(32) - header + data)
}

#[test]
fn bad_tensors() {
    // A well-formed tensor for reference.
    assert!(read_bytes(&one_tensor(&[4], 0, 0, 16).0).is_ok());
    let bad = |r: Raw| matches!(r.read(), GgufError::BadTensor { .. });
    assert!(bad(one_tensor(&[4], 0, 0, 15)), "data past end of file");
    assert!(bad(one_tensor(&[4], 0, 32, 16)), "offset past end of file");
    assert!(bad(one_tensor(&[4], 0, 8, 64)), "misaligned offset");
    assert!(bad(one_tensor(&[4], 0, u64::MAX - 7, 16)), "offset + size overflows");
    assert!(bad(one_tensor(&[4], 4, 0, 16)), "removed type id");
    assert!(bad(one_tensor(&[4], 999, 0, 16)), "unknown type id");
    assert!(bad(one_tensor(&[], 0, 0, 16)), "zero dimensions");
    assert!(bad(one_tensor(&[1, 1, 1, 1, 1], 0, 0, 16)), "five dimensions");
    assert!(bad(one_tensor(&[1 << 32, 1 << 32], 0, 0, 16)), "element count overflow");
    assert!(bad(one_tensor(&[33], 8, 0, 64)), "not a whole Q8_0 block");
    let mut dup = Raw::new(2, 0);
    for _ in 0..2 {
        dup = dup.str("t").u32(1).u64(4).u32(0).u64(0);
    }
    assert!(matches!(dup.pad(64).read(), GgufError::Duplicate { .. }));
}

/// A cheap in-tree fuzzer: thousands of random corruptions of a valid file. The real fuzz target
/// lives in `fuzz/`; this one runs in every `cargo test`.
#[test]
fn random_corruption_never_panics() {
    let base = sample();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6767_7566);
    let mut errors = 0;
    for _ in 0..5000 {
        let mut bytes = base.clone();
        for _ in 0..rng.gen_range(1..8) {
            let i = rng.gen_range(0..bytes.len());
            match rng.gen_range(0..4) {
                0 => bytes[i] = rng.gen(),
                1 => bytes[i] ^= 1 << rng.gen_range(0..8),
                2 => bytes.truncate(i),
                _ => {
                    // Plant a large little-endian integer, the shape of most attacks on counts.
                    let v: u64 = rng.gen::<u64>() >> rng.gen_range(0..60);
                    let end = (i + 8).min(bytes.len());
                    bytes[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        if read_bytes(&bytes).is_err() {
            errors += 1;
        }
    }
    // Sanity: the corruptions really do hit the parser.
    assert!(errors > 1000, "only {errors} corruptions were detected");
}
