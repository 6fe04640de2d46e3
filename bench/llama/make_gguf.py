"""Writes a llama-architecture GGUF model with random f16 weights, for
llama.cpp benchmarks without downloading a model (tests/gpu/llama-run).

The default shape is GPT-2-XL's (48 layers, width 1600, 25 heads of 64,
vocabulary 50257, tied input and output embeddings) with Llama's three-matrix
feed-forward narrowed to 4352 so the parameter count stays GPT-2-XL's:
about 1.57 billion parameters, 3.1 GB. --small writes a 4-layer model of a few
MB for quick checks. The vocabulary is a SentencePiece-style one llama.cpp
accepts (unknown, BOS, EOS, the 256 byte tokens, then placeholder words); the
benchmark feeds random token ids, so no text is ever tokenized.

Every weight byte is drawn fresh (no repeated blocks), so a content cache
cannot shortcut a cold load: f16 values with a random sign and mantissa and
an exponent giving magnitudes in [2^-8, 2^-4), never NaN or infinity.

    python3 bench/llama/make_gguf.py OUT.gguf [--small] [--seed N]   (prints a JSON line)

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

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


GPT2_XL = Shape(n_layer=48, n_embd=1600, n_head=25, n_ff=4352, n_vocab=50257, n_ctx=2048)
SMALL = Shape(n_layer=4, n_embd=256, n_head=4, n_ff=704, n_vocab=4096, n_ctx=2048)

N_SPECIAL = 3  # <unk>, <s>, </s>
N_BYTES = 256  # <0x00> .. <0xFF>


def tensor_shapes(s: Shape) -> list[tuple[str, tuple[int, ...], type]]:
    """(name, numpy shape, dtype) in file order. numpy's shape is ggml's
    reversed: a weight mapping n_in to n_out is (n_out, n_in)."""
    out: list[tuple[str, tuple[int, ...], type]] = [("token_embd.weight", (s.n_vocab, s.n_embd), np.float16)]
    for i in range(s.n_layer):
        b = f"blk.{i}."
        out += [
            (b + "attn_norm.weight", (s.n_embd,), np.float32),
            (b + "attn_q.weight", (s.n_embd, s.n_embd), np.float16),
            (b + "attn_k.weight", (s.n_embd, s.n_embd), np.float16),
            (b + "attn_v.weight", (s.n_embd, s.n_embd), np.float16),
            (b + "attn_output.weight", (s.n_embd, s.n_embd), np.float16),
            (b + "ffn_norm.weight", (s.n_embd,), np.float32),
            (b + "ffn_gate.weight", (s.n_ff, s.n_embd), np.float16),
            (b + "ffn_up.weight", (s.n_ff, s.n_embd), np.float16),
            (b + "ffn_down.weight", (s.n_embd, s.n_ff), np.float16),
        ]
    out.append(("output_norm.weight", (s.n_embd,), np.float32))
    return out


def random_f16(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Fresh random f16 values: random sign and mantissa, exponent 7..10
    (magnitudes 2^-8 to 2^-4), built from random bits (fast; no NaN/inf)."""
    n = int(np.prod(shape))
    bits = np.frombuffer(rng.bytes(2 * n), dtype=np.uint16)
    exponent = (((bits >> 10) & np.uint16(0x3)) + np.uint16(7)) << np.uint16(10)
    return ((bits & np.uint16(0x83FF)) | exponent).view(np.float16).reshape(shape)


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


def write(path: str, s: Shape, seed: int) -> dict:
    import gguf

    arch = "llama"
    w = gguf.GGUFWriter(path, arch)
    w.add_name("gpuwire random " + ("gpt2-xl-shaped" if s == GPT2_XL else "small") + " llama")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_context_length(s.n_ctx)
    w.add_embedding_length(s.n_embd)
    w.add_block_count(s.n_layer)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head)
    w.add_rope_dimension_count(s.head_dim)
    w.add_rope_freq_base(10000.0)
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
    for name, shape, dtype in shapes:
        w.add_tensor_info(name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    params = 0
    for name, shape, dtype in shapes:
        # norms are ones, as a freshly initialised RMSNorm is
        t = random_f16(rng, shape) if dtype is np.float16 else np.ones(shape, dtype=np.float32)
        w.write_tensor_data(t)
        params += t.size
    w.close()
    return {"params": params, "bytes": os.path.getsize(path), "tensors": len(shapes), "shape": asdict(s)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the .gguf file to write (written beside it, then renamed)")
    p.add_argument("--small", action="store_true", help="a 4-layer model of a few MB")
    p.add_argument("--seed", type=int, help="default: a fresh one (printed), so no earlier run's bytes repeat")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    tmp = a.out + ".part"
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    info = write(tmp, SMALL if a.small else GPT2_XL, seed)
    info["seed"] = seed
    os.replace(tmp, a.out)
    info["write_s"] = round(time.monotonic() - t0, 2)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
