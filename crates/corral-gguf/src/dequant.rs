//! Tensor data back to f32, for the block types the test models use (F32, F16, BF16, Q4_0, Q4_1,
//! Q5_0, Q8_0, Q4_K, Q6_K): what exporting a GGUF to safetensors needs. The layouts are ggml's
//! (`ggml-common.h`); each block type is read as its reference dequantizer reads it.

use half::{bf16, f16};

use crate::GgmlType;

/// `data` (the bytes of `count` elements of type `kind`) as f32 values; `None` for a type this
/// does not read, or bytes that do not hold `count` elements.
pub fn dequantize(kind: GgmlType, data: &[u8], count: usize) -> Option<Vec<f32>> {
    let half = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
    let blocks =
        |size: usize| (count.is_multiple_of(32) && data.len() == count / 32 * size).then(|| data.chunks_exact(size));
    let super_blocks =
        |size: usize| (count.is_multiple_of(256) && data.len() == count / 256 * size).then(|| data.chunks_exact(size));
    let mut out = Vec::with_capacity(count);
    match kind.id() {
        0 if data.len() == count * 4 => {
            out.extend(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        }
        1 if data.len() == count * 2 => out.extend(data.chunks_exact(2).map(half)),
        30 if data.len() == count * 2 => {
            out.extend(data.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()))
        }
        // Q4_0: a scale, then 32 four-bit values offset by 8 (low nibbles first, then high).
        2 => {
            for b in blocks(18)? {
                let d = half(&b[..2]);
                out.extend(b[2..].iter().map(|q| f32::from(i16::from(q & 0x0f) - 8) * d));
                out.extend(b[2..].iter().map(|q| f32::from(i16::from(q >> 4) - 8) * d));
            }
        }
        // Q4_1: a scale and a minimum, then 32 four-bit values.
        3 => {
            for b in blocks(20)? {
                let (d, m) = (half(&b[..2]), half(&b[2..4]));
                out.extend(b[4..].iter().map(|q| f32::from(q & 0x0f) * d + m));
                out.extend(b[4..].iter().map(|q| f32::from(q >> 4) * d + m));
            }
        }
        // Q8_0: a scale, then 32 signed bytes.
        8 => {
            for b in blocks(34)? {
                let d = half(&b[..2]);
                out.extend(b[2..].iter().map(|q| f32::from(*q as i8) * d));
            }
        }
        // Q5_0: a scale, 32 fifth bits, then the low nibbles; values offset by 16.
        6 => {
            for b in blocks(22)? {
                let d = half(&b[..2]);
                let high = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                let q = &b[6..];
                let value = |low: u8, bit: usize| f32::from(i16::from(low | (((high >> bit) & 1) as u8) << 4) - 16) * d;
                out.extend(q.iter().enumerate().map(|(j, q)| value(q & 0x0f, j)));
                out.extend(q.iter().enumerate().map(|(j, q)| value(q >> 4, j + 16)));
            }
        }
        // Q4_K: 256 values in eight groups of 32, each with a six-bit scale and minimum (packed
        // into 12 bytes) under the block's two f16 factors; four-bit values, two groups per 32
        // bytes (low nibbles, then high).
        12 => {
            for b in super_blocks(144)? {
                let (d, dmin) = (half(&b[..2]), half(&b[2..4]));
                let (scales, q) = (&b[4..16], &b[16..]);
                let scale_min = |j: usize| {
                    if j < 4 {
                        (scales[j] & 63, scales[j + 4] & 63)
                    } else {
                        (
                            (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4),
                            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
                        )
                    }
                };
                for (pair, q) in q.chunks_exact(32).enumerate() {
                    let (s1, m1) = scale_min(pair * 2);
                    let (s2, m2) = scale_min(pair * 2 + 1);
                    let (d1, m1, d2, m2) =
                        (d * f32::from(s1), dmin * f32::from(m1), d * f32::from(s2), dmin * f32::from(m2));
                    out.extend(q.iter().map(|q| d1 * f32::from(q & 0x0f) - m1));
                    out.extend(q.iter().map(|q| d2 * f32::from(q >> 4) - m2));
                }
            }
        }
        // Q6_K: 256 six-bit values (low four bits in 128 bytes, high two in 64), sixteen signed
        // eight-bit scales, one f16 factor; values offset by 32. Each half of 128 values takes
        // its bits from 64 low bytes and 32 high bytes in four interleaved runs of 32.
        14 => {
            for b in super_blocks(210)? {
                let (low, high, scales) = (&b[..128], &b[128..192], &b[192..208]);
                let d = half(&b[208..210]);
                for n in 0..2 {
                    let (ql, qh, sc) = (&low[n * 64..], &high[n * 32..], &scales[n * 8..]);
                    let mut run = [[0f32; 32]; 4];
                    for l in 0..32 {
                        let q = [
                            (ql[l] & 0x0f) | (qh[l] & 3) << 4,
                            (ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4,
                            (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4,
                            (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4,
                        ];
                        for (r, q) in q.into_iter().enumerate() {
                            let scale = f32::from(sc[l / 16 + 2 * r] as i8);
                            run[r][l] = d * scale * f32::from(i16::from(q) - 32);
                        }
                    }
                    out.extend(run.iter().flatten());
                }
            }
        }
        _ => return None,
    }
    (out.len() == count).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_round_trips_within_its_step() {
        let values: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) / 10.0).collect();
        let back = dequantize(GgmlType::Q8_0, &crate::quantize_q8_0(&values), 64).unwrap();
        for (a, b) in values.iter().zip(&back) {
            assert!((a - b).abs() < 3.2 / 127.0, "{a} vs {b}");
        }
        assert_eq!(dequantize(GgmlType::Q8_0, &[0; 33], 32), None, "a short block");
        assert_eq!(dequantize(GgmlType::F16, &f16::from_f32(1.5).to_le_bytes(), 1), Some(vec![1.5]));
    }

    #[test]
    fn q4_1_and_q4_0_blocks() {
        let mut block = f16::from_f32(0.5).to_le_bytes().to_vec();
        block.extend(f16::from_f32(-1.0).to_le_bytes());
        block.extend([0x21u8; 16]);
        let v = dequantize(GgmlType::from_id(3).unwrap(), &block, 32).unwrap();
        assert_eq!((v[0], v[16]), (1.0 * 0.5 - 1.0, 2.0 * 0.5 - 1.0));
        let mut block = f16::from_f32(2.0).to_le_bytes().to_vec();
        block.extend([0x9fu8; 16]);
        let v = dequantize(GgmlType::from_id(2).unwrap(), &block, 32).unwrap();
        assert_eq!((v[0], v[16]), (14.0, 2.0));
    }

    #[test]
    fn q4_k_scales_and_minimums_by_group() {
        let mut block = f16::from_f32(0.5).to_le_bytes().to_vec();
        block.extend(f16::from_f32(0.25).to_le_bytes());
        let mut scales = [0u8; 12];
        scales[0] = 4 | 1 << 6; // group 0's scale 4; its top bits add 16 to group 4's scale
        scales[4] = 8 | 1 << 6; // group 0's minimum 8; its top bits add 16 to group 4's minimum
        scales[8] = 3 | 2 << 4; // group 4's scale 3 and minimum 2 (low bits)
        block.extend(scales);
        block.extend([0x52u8; 128]); // low nibbles 2, high 5
        let v = dequantize(GgmlType::from_id(12).unwrap(), &block, 256).unwrap();
        assert_eq!(v[0], 0.5 * 4.0 * 2.0 - 0.25 * 8.0, "group 0, low nibble");
        assert_eq!(v[32], 0.0, "group 1: no scale, no minimum");
        assert_eq!(v[128], 0.5 * 19.0 * 2.0 - 0.25 * 18.0, "group 4 reads the packed high bits");
        assert_eq!(v[160], 0.0);
    }

    #[test]
    fn q6_k_runs_take_their_bits_and_scales() {
        let mut block = vec![0x21u8; 128]; // low bits 1 (first runs) and 2 (third runs)
        block.extend([0b1110_0100u8; 64]); // high bits 0, 1, 2, 3 for the four runs
        block.extend((0..16).map(|i| i as u8 + 1)); // scales 1..16
        block.extend(f16::from_f32(0.5).to_le_bytes());
        let v = dequantize(GgmlType::from_id(14).unwrap(), &block, 256).unwrap();
        let expect = |q: i32, scale: f32| 0.5 * scale * (q - 32) as f32;
        assert_eq!(v[0], expect(1, 1.0));
        assert_eq!(v[16], expect(1, 2.0));
        assert_eq!(v[32], expect(1 | 1 << 4, 3.0));
        assert_eq!(v[64], expect(2 | 2 << 4, 5.0));
        assert_eq!(v[96], expect(2 | 3 << 4, 7.0));
        assert_eq!(v[128], expect(1, 9.0), "the second half has its own scales");
        let q5 =
            [f16::from_f32(1.0).to_le_bytes().to_vec(), 0x0001_0001u32.to_le_bytes().to_vec(), vec![0x43; 16]].concat();
        let v = dequantize(GgmlType::from_id(6).unwrap(), &q5, 32).unwrap();
        assert_eq!((v[0], v[1], v[16], v[17]), (3.0 + 16.0 - 16.0, 3.0 - 16.0, 4.0 + 16.0 - 16.0, 4.0 - 16.0));
    }
}
