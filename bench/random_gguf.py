#!/usr/bin/env python3
"""Writes a llama-architecture GGUF of a real model's shape with random Q4_0 weights.

Kernels do not look at the values, so such a file measures speed exactly as the real model would
(see ../shared/reference/gpu.md) and can be made on a machine no weights can be brought to. The
vocabulary is SentencePiece-style: <unk> <s> </s>, the 256 byte tokens, then filler pieces up to
the shape's vocabulary size. Pure Python (no numpy): a pool of random blocks is written repeatedly.

    bench/random_gguf.py qwen0.5b /tmp/q.gguf
    bench/random_gguf.py llama8b /tmp/l.gguf
    bench/random_gguf.py tiny /tmp/t.gguf        # a small one for trying the tools out
"""
import os
import struct
import sys

SHAPES = {
    # name: (embedding, blocks, heads, kv heads, feed-forward, vocabulary, training context)
    "tiny": (256, 4, 4, 2, 768, 4096, 4096),
    "qwen0.5b": (896, 24, 14, 2, 4864, 151936, 32768),
    "llama8b": (4096, 32, 32, 8, 14336, 128256, 131072),
}

F32, Q4_0 = 0, 2
ALIGN = 32
BLOCK = 18  # Q4_0: an f16 scale and 32 four-bit values
SCALE = struct.pack("<e", 0.004)


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, kind, value):
    out = gguf_string(key)
    if kind == "u32":
        return out + struct.pack("<II", 4, value)
    if kind == "i32":
        return out + struct.pack("<Ii", 5, value)
    if kind == "f32":
        return out + struct.pack("<If", 6, value)
    if kind == "bool":
        return out + struct.pack("<IB", 7, 1 if value else 0)
    if kind == "str":
        return out + struct.pack("<I", 8) + gguf_string(value)
    if kind == "strs":
        return out + struct.pack("<IIQ", 9, 8, len(value)) + b"".join(gguf_string(v) for v in value)
    if kind == "f32s":
        return out + struct.pack("<IIQ", 9, 6, len(value)) + struct.pack(f"<{len(value)}f", *value)
    if kind == "i32s":
        return out + struct.pack("<IIQ", 9, 5, len(value)) + struct.pack(f"<{len(value)}i", *value)
    raise ValueError(kind)


def tensors(embd, blocks, heads, kv_heads, ff, vocab):
    head_dim = embd // heads
    out = [("token_embd.weight", Q4_0, (embd, vocab))]
    for i in range(blocks):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", F32, (embd,)),
            (p + "attn_q.weight", Q4_0, (embd, heads * head_dim)),
            (p + "attn_k.weight", Q4_0, (embd, kv_heads * head_dim)),
            (p + "attn_v.weight", Q4_0, (embd, kv_heads * head_dim)),
            (p + "attn_output.weight", Q4_0, (heads * head_dim, embd)),
            (p + "ffn_norm.weight", F32, (embd,)),
            (p + "ffn_gate.weight", Q4_0, (embd, ff)),
            (p + "ffn_up.weight", Q4_0, (embd, ff)),
            (p + "ffn_down.weight", Q4_0, (ff, embd)),
        ]
    out += [("output_norm.weight", F32, (embd,)), ("output.weight", Q4_0, (embd, vocab))]
    return out


def nbytes(kind, dims):
    n = 1
    for d in dims:
        n *= d
    return n * 4 if kind == F32 else n // 32 * BLOCK


def write(shape, path):
    embd, blocks, heads, kv_heads, ff, vocab, ctx = SHAPES[shape]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581w{i}" for i in range(vocab - len(tokens))]
    types = [2, 3, 3] + [6] * 256 + [1] * (vocab - 259)
    meta = [
        kv("general.architecture", "str", "llama"),
        kv("general.name", "str", f"random {shape}"),
        kv("general.file_type", "u32", 2),
        kv("llama.context_length", "u32", ctx),
        kv("llama.embedding_length", "u32", embd),
        kv("llama.block_count", "u32", blocks),
        kv("llama.feed_forward_length", "u32", ff),
        kv("llama.attention.head_count", "u32", heads),
        kv("llama.attention.head_count_kv", "u32", kv_heads),
        kv("llama.rope.dimension_count", "u32", embd // heads),
        kv("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5),
        kv("tokenizer.ggml.model", "str", "llama"),
        kv("tokenizer.ggml.tokens", "strs", tokens),
        kv("tokenizer.ggml.scores", "f32s", [0.0] * 259 + [-float(i) for i in range(vocab - 259)]),
        kv("tokenizer.ggml.token_type", "i32s", types),
        kv("tokenizer.ggml.unknown_token_id", "u32", 0),
        kv("tokenizer.ggml.bos_token_id", "u32", 1),
        kv("tokenizer.ggml.eos_token_id", "u32", 2),
        kv("tokenizer.ggml.add_bos_token", "bool", True),
    ]
    infos, offset = [], 0
    layout = tensors(embd, blocks, heads, kv_heads, ff, vocab)
    for name, kind, dims in layout:
        infos.append(gguf_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", kind, offset))
        offset += (nbytes(kind, dims) + ALIGN - 1) // ALIGN * ALIGN
    header = b"GGUF" + struct.pack("<IQQ", 3, len(layout), len(meta)) + b"".join(meta) + b"".join(infos)
    pool_blocks = 1 << 20
    randoms = os.urandom(pool_blocks * 16)
    pool = b"".join(SCALE + randoms[i * 16:(i + 1) * 16] for i in range(pool_blocks))
    ones = struct.pack("<f", 1.0) * max(embd, 1)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(b"\0" * (-len(header) % ALIGN))
        for name, kind, dims in layout:
            size = nbytes(kind, dims)
            if kind == F32:
                f.write(ones[:size])
            else:
                left = size
                while left:
                    n = min(left, len(pool))
                    f.write(pool[:n])
                    left -= n
            f.write(b"\0" * (-size % ALIGN))
    os.replace(tmp, path)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in SHAPES:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(SHAPES)}}} OUT.gguf")
    write(sys.argv[1], sys.argv[2])
    print(f"{sys.argv[2]}: {os.path.getsize(sys.argv[2]) / 2**20:.0f} MiB")
