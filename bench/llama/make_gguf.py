"""Writes a llama-architecture GGUF model with random weights, for llama.cpp
benchmarks without downloading a model (tests/gpu/llama-run).

Models (--model):
- gpt2xl-f16 (the default): GPT-2-XL's shape (48 layers, width 1600, 25 heads
  of 64, vocabulary 50257, tied input and output embeddings) with Llama's
  three-matrix feed-forward narrowed to 4352 so the parameter count stays
  GPT-2-XL's: about 1.57 billion parameters, f16, 3.1 GB.
- llama3-1b-f16: Llama-3.2-1B's shape (16 layers, width 2048, 32 query and 8
  key/value heads, feed-forward 8192, vocabulary 128256, tied embeddings),
  f16, 2.5 GB.
- llama3-8b-q4km: Llama-3-8B's shape (32 layers, width 4096, 32/8 heads,
  feed-forward 14336, vocabulary 128256, its own output matrix) with the
  tensor types llama-quantize's Q4_K_M gives it: Q4_K, and Q6_K for the output
  matrix and for attn_v and ffn_down in the first and last eighth of the
  layers and every third one between; about 4.9 GB. The blocks are written
  directly (random quants and 6-bit scales, block scales chosen so weights
  stay in the f16 model's range), so no f16 original and no llama-quantize
  run are needed; llama.cpp runs exactly the Q4_K and Q6_K kernels a
  quantized real model makes it run.
- small (or --small): a 4-layer f16 model of a few MB for quick checks. The vocabulary is a SentencePiece-style one llama.cpp
accepts (unknown, BOS, EOS, the 256 byte tokens, then placeholder words); the
benchmark feeds random token ids, so no text is ever tokenized.

Every weight byte is drawn fresh (no repeated blocks), so a content cache
cannot shortcut a cold load: f16 values with a random sign and mantissa and
an exponent giving magnitudes in [2^-8, 2^-4), never NaN or infinity.

    python3 bench/llama/make_gguf.py OUT.gguf [--model NAME | --small] [--seed N]   (prints a JSON line)

Needs gguf-py (llama.cpp's gguf-py folder on PYTHONPATH) and numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Shape:
    n_layer: int
    n_embd: int
    n_head: int
    n_ff: int
    n_vocab: int
    n_ctx: int
    n_head_kv: int = 0  # 0: as many as query heads
    quant: str = "f16"  # or "q4km"
    tied: bool = True  # the output matrix is the input embeddings
    rope_base: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_width(self) -> int:
        return (self.n_head_kv or self.n_head) * self.head_dim


GPT2_XL = Shape(n_layer=48, n_embd=1600, n_head=25, n_ff=4352, n_vocab=50257, n_ctx=2048)
SMALL = Shape(n_layer=4, n_embd=256, n_head=4, n_ff=704, n_vocab=4096, n_ctx=2048)
LLAMA3_1B = Shape(n_layer=16, n_embd=2048, n_head=32, n_ff=8192, n_vocab=128256, n_ctx=8192,
                  n_head_kv=8, rope_base=500000.0)
LLAMA3_8B_Q4KM = Shape(n_layer=32, n_embd=4096, n_head=32, n_ff=14336, n_vocab=128256, n_ctx=8192,
                       n_head_kv=8, quant="q4km", tied=False, rope_base=500000.0)
SMALL_Q4KM = Shape(n_layer=4, n_embd=256, n_head=4, n_ff=768, n_vocab=4096, n_ctx=2048,
                   n_head_kv=2, quant="q4km", tied=False)
MODELS = {"gpt2xl-f16": GPT2_XL, "llama3-1b-f16": LLAMA3_1B, "llama3-8b-q4km": LLAMA3_8B_Q4KM,
          "small": SMALL, "small-q4km": SMALL_Q4KM}

# ggml's block layouts (ggml-common.h): 256 weights a block
QK_K = 256
Q4_K_BYTES = 144  # d, dmin (f16 each), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
Q6_K_BYTES = 210  # 128 bytes low 4 bits, 64 bytes high 2 bits, 16 int8 scales, d (f16)

N_SPECIAL = 3  # <unk>, <s>, </s>
N_BYTES = 256  # <0x00> .. <0xFF>


def more_bits(i: int, n: int) -> bool:
    """The layers whose attn_v and ffn_down Q4_K_M keeps at Q6_K (llama.cpp's
    rule: the first and last eighth, and every third layer between)."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_shapes(s: Shape) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape, type) in file order, type one of f32, f16, q4_k,
    q6_k. numpy's shape is ggml's reversed: a weight mapping n_in to n_out is
    (n_out, n_in)."""
    q = s.quant == "q4km"
    mat = "q4_k" if q else "f16"

    def wide(i: int) -> str:
        return "q6_k" if q and more_bits(i, s.n_layer) else mat

    out: list[tuple[str, tuple[int, ...], str]] = [("token_embd.weight", (s.n_vocab, s.n_embd), mat)]
    for i in range(s.n_layer):
        b = f"blk.{i}."
        out += [
            (b + "attn_norm.weight", (s.n_embd,), "f32"),
            (b + "attn_q.weight", (s.n_embd, s.n_embd), mat),
            (b + "attn_k.weight", (s.kv_width, s.n_embd), mat),
            (b + "attn_v.weight", (s.kv_width, s.n_embd), wide(i)),
            (b + "attn_output.weight", (s.n_embd, s.n_embd), mat),
            (b + "ffn_norm.weight", (s.n_embd,), "f32"),
            (b + "ffn_gate.weight", (s.n_ff, s.n_embd), mat),
            (b + "ffn_up.weight", (s.n_ff, s.n_embd), mat),
            (b + "ffn_down.weight", (s.n_embd, s.n_ff), wide(i)),
        ]
    out.append(("output_norm.weight", (s.n_embd,), "f32"))
    if not s.tied:
        out.append(("output.weight", (s.n_vocab, s.n_embd), "q6_k" if q else "f16"))
    return out


def nbytes(shape: tuple[int, ...], kind: str) -> int:
    n = int(np.prod(shape))
    if kind in ("q4_k", "q6_k"):
        if shape[-1] % QK_K:
            raise ValueError(f"rows of {shape[-1]} are not whole {QK_K}-weight blocks")
        return n // QK_K * (Q4_K_BYTES if kind == "q4_k" else Q6_K_BYTES)
    return n * (4 if kind == "f32" else 2)


def random_f16(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Fresh random f16 values: random sign and mantissa, exponent 7..10
    (magnitudes 2^-8 to 2^-4), built from random bits (fast; no NaN/inf)."""
    n = int(np.prod(shape))
    bits = np.frombuffer(rng.bytes(2 * n), dtype=np.uint16)
    exponent = (((bits >> 10) & np.uint16(0x3)) + np.uint16(7)) << np.uint16(10)
    return ((bits & np.uint16(0x83FF)) | exponent).view(np.float16).reshape(shape)


def f16_bits(rng: np.random.Generator, n: int, lo_exp: int, hi_exp: int) -> np.ndarray:
    """n positive f16 values 2^lo_exp <= v < 2^hi_exp (normal numbers: -14 <=
    lo_exp < hi_exp <= 16), as their uint16 bits."""
    e = rng.integers(lo_exp + 15, hi_exp + 15, size=n).astype(np.uint16) << np.uint16(10)
    return e | (np.frombuffer(rng.bytes(2 * n), dtype=np.uint16) & np.uint16(0x3FF))


def random_blocks(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Fresh random Q4_K or Q6_K blocks for a tensor of that shape, as bytes
    (rows of blocks). Quants and 6-bit scales are random bits; the f16 block
    scales are set so a weight's magnitude stays below about 2^-2 (Q4_K:
    d, dmin in [2^-14, 2^-12), times scale < 64 and quant < 16; Q6_K: d in
    [2^-14, 2^-13), its int8 scales narrowed to [-16, 16), times
    |quant - 32| <= 32)."""
    n_blocks = int(np.prod(shape)) // QK_K
    size = Q4_K_BYTES if kind == "q4_k" else Q6_K_BYTES
    b = np.frombuffer(rng.bytes(n_blocks * size), dtype=np.uint8).reshape(n_blocks, size).copy()
    if kind == "q4_k":
        b[:, 0:4] = f16_bits(rng, 2 * n_blocks, -14, -12).view(np.uint8).reshape(n_blocks, 4)
    else:
        b[:, 192:208] = (b[:, 192:208].view(np.int8) >> 3).view(np.uint8)
        b[:, 208:210] = f16_bits(rng, n_blocks, -14, -13).view(np.uint8).reshape(n_blocks, 2)
    return b.reshape(*shape[:-1], shape[-1] // QK_K * size)


def vocabulary(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    from gguf import TokenType

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(N_BYTES)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * N_BYTES
    if n_vocab < len(tokens) + 1:
        raise ValueError(f"vocabulary of {n_vocab}: needs more than {len(tokens)} tokens")
    tokens += [f"\u2581w{i}" for i in range(n_vocab - len(tokens))]
    types += [TokenType.NORMAL] * (n_vocab - len(types))
    scores = [0.0] * (N_SPECIAL + N_BYTES) + [-float(i) for i in range(n_vocab - N_SPECIAL - N_BYTES)]
    return tokens, scores, [int(t) for t in types]


def write(path: str, name: str, seed: int) -> dict:
    import gguf

    s = MODELS[name]
    arch = "llama"
    w = gguf.GGUFWriter(path, arch)
    w.add_name("gpuwire random " + name)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M if s.quant == "q4km" else gguf.LlamaFileType.MOSTLY_F16)
    w.add_context_length(s.n_ctx)
    w.add_embedding_length(s.n_embd)
    w.add_block_count(s.n_layer)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head_kv or s.n_head)
    w.add_rope_dimension_count(s.head_dim)
    w.add_rope_freq_base(s.rope_base)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(s.n_vocab)
    tokens, scores, types = vocabulary(s.n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    shapes = tensor_shapes(s)
    raw = {"q4_k": gguf.GGMLQuantizationType.Q4_K, "q6_k": gguf.GGMLQuantizationType.Q6_K}
    for tname, shape, kind in shapes:
        size = nbytes(shape, kind)
        if kind in raw:  # the shape in bytes; the writer turns it back into weights
            w.add_tensor_info(tname, (*shape[:-1], size // int(np.prod(shape[:-1]))), np.dtype(np.uint8), size,
                              raw_dtype=raw[kind])
        else:
            w.add_tensor_info(tname, shape, np.dtype(np.float16 if kind == "f16" else np.float32), size)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    params = 0
    for _, shape, kind in shapes:
        # norms are ones, as a freshly initialised RMSNorm is
        if kind == "f32":
            t = np.ones(shape, dtype=np.float32)
        elif kind == "f16":
            t = random_f16(rng, shape)
        else:
            t = random_blocks(rng, shape, kind)
        w.write_tensor_data(t)
        params += int(np.prod(shape))
    w.close()
    return {"model": name, "params": params, "bytes": os.path.getsize(path), "tensors": len(shapes),
            "shape": asdict(s)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the .gguf file to write (written beside it, then renamed)")
    p.add_argument("--model", choices=sorted(MODELS), default="gpt2xl-f16", help="which model (default %(default)s)")
    p.add_argument("--small", action="store_true", help="the same as --model small: a 4-layer model of a few MB")
    p.add_argument("--seed", type=int, help="default: a fresh one (printed), so no earlier run's bytes repeat")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    tmp = a.out + ".part"
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    info = write(tmp, "small" if a.small else a.model, seed)
    info["seed"] = seed
    os.replace(tmp, a.out)
    info["write_s"] = round(time.monotonic() - t0, 2)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
