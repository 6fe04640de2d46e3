"""hf_generate: Hugging Face transformers' own generate() on a random-weight Llama (issue 20,
second benchmark): a TinyLlama-1.1B-shaped LlamaConfig (22 layers, hidden 2048, SwiGLU 5632,
32 heads with 4 key/value heads, vocabulary 32000), its weights created directly on the
device (`with torch.device(...)`, transformers' own initialisation from a fixed seed), bf16,
batch 1, a fixed prompt of token ids, greedy: generate(do_sample=False, max_new_tokens=N,
min_new_tokens=N), so every run makes exactly N tokens (no end token can stop it).

One warm-up generate (--warmup new tokens), then the prefill alone timed (generate with one
new token, the median of --prefill-reps), then the timed generate of --tokens; each timing
is a synchronize, generate, synchronize. Decode time per token = (full - prefill) / (N - 1):
the first new token comes out of the prefill. Reports decode tokens/s, the prefill, the
whole call, the sha256 of the generated ids (sha256_16: of the first 16, for runs cut short
by --max-seconds, which stops generate after at least 16 new tokens) and the GPU's name.
--exact N: the same set-up and warm-up, then one generate of exactly N new tokens (N = 0:
set-up only), for round trips per token from two such runs (bench/suite.py's probes).

--attention picks PyTorch's SDPA kernels as bench/torch_decode.py does (auto: PyTorch's own
choice, on the H100 cuDNN, which NVRTC-compiles a plan per new key length);
--attn-implementation picks transformers' attention code (sdpa, its default, or eager).

How often generate() itself waits on the GPU per token depends on transformers' version
(4.57: twice, the SDPA mask check's padding_mask.all() and the loop's finished-sequences
check; 5.17 defers the stop check by a step on CUDA where it can), so no app_syncs figure
is reported."""

from __future__ import annotations

import contextlib
import hashlib

from benchlib import emit, fail, median, now, parser, sync, thread_usage, usage_fields

# TinyLlama-1.1B's shape (its config.json), all but the weights
TINYLLAMA = {"num_hidden_layers": 22, "hidden_size": 2048, "intermediate_size": 5632,
             "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
             "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0}
SDPA_BACKENDS = ("flash", "efficient", "math", "cudnn")


def build_args(argv=None):
    p = parser(__doc__)
    p.add_argument("--tokens", type=int, default=128, help="new tokens of the timed generate")
    p.add_argument("--prompt", type=int, default=32, help="prompt length (fixed token ids)")
    p.add_argument("--warmup", type=int, default=-1,
                   help="new tokens of the warm-up generate (default: --tokens, every cache length once)")
    p.add_argument("--prefill-reps", type=int, default=3, help="prefill-only generates timed (median)")
    p.add_argument("--layers", type=int, default=TINYLLAMA["num_hidden_layers"])
    p.add_argument("--dim", type=int, default=TINYLLAMA["hidden_size"])
    p.add_argument("--ffn", type=int, default=TINYLLAMA["intermediate_size"])
    p.add_argument("--heads", type=int, default=TINYLLAMA["num_attention_heads"])
    p.add_argument("--kv-heads", type=int, default=TINYLLAMA["num_key_value_heads"])
    p.add_argument("--vocab", type=int, default=TINYLLAMA["vocab_size"])
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--attention", default="auto", choices=["auto", *SDPA_BACKENDS])
    p.add_argument("--attn-implementation", default="sdpa", choices=["sdpa", "eager"])
    p.add_argument("--ids", metavar="FILE", help="also write the generated token ids there, one per line")
    a = p.parse_args(argv)
    if a.tokens < 2 and a.exact < 0:
        p.error("--tokens must be at least 2 (the decode time is the difference from a one-token prefill)")
    if a.exact < -1 or a.prompt < 1 or a.prefill_reps < 1:
        p.error("--exact, --prompt and --prefill-reps: out of range")
    if a.warmup < 0:
        a.warmup = a.tokens
    if a.prompt + max(a.tokens, a.warmup, a.exact) > TINYLLAMA["max_position_embeddings"]:
        p.error("prompt + new tokens exceed the model's 2048 positions")
    return a


def config(a, transformers):
    """The LlamaConfig, with no end token (nothing may stop generate early) and the
    attention implementation chosen."""
    c = transformers.LlamaConfig(
        **{**TINYLLAMA, "num_hidden_layers": a.layers, "hidden_size": a.dim, "intermediate_size": a.ffn,
           "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "vocab_size": a.vocab},
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=None, pad_token_id=0, use_cache=True)
    c._attn_implementation = a.attn_implementation
    return c


@contextlib.contextmanager
def default_dtype(torch, dt):
    """Parameters made in dt from the start: no float32 copy of 1.1 B weights first."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dt)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def sdpa_choice(torch, name: str):
    if name == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    pick = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "math": SDPBackend.MATH, "cudnn": SDPBackend.CUDNN_ATTENTION}[name]
    return sdpa_kernel([pick])


class TimeBudget:
    """A stopping criterion: stop once `seconds` have passed and at least `least` new
    tokens are out (generate's min_new_tokens only holds back end tokens)."""

    def __init__(self, torch, prompt_len: int, seconds: float | None, least: int = 16):
        self.torch, self.prompt_len, self.seconds, self.least = torch, prompt_len, seconds, least
        self.t0 = now()

    def __call__(self, input_ids, scores, **kwargs):
        done = (self.seconds is not None and input_ids.shape[1] - self.prompt_len >= self.least
                and now() - self.t0 > self.seconds)
        return self.torch.full((input_ids.shape[0],), done, dtype=self.torch.bool, device=input_ids.device)


def id_digest(ids) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def gpu_name(torch, dev: str) -> str:
    if dev.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(dev))
    return dev


def main(argv=None):
    a = build_args(argv)
    import torch
    try:
        import transformers
    except ImportError as e:
        fail("hf_generate", f"transformers is not importable: {e}")
    dev, dt = a.device, getattr(torch, a.dtype)
    torch.manual_seed(0)  # the CPU's and every GPU's generator
    t_build = now()
    with torch.device(dev), default_dtype(torch, dt):
        model = transformers.LlamaForCausalLM(config(a, transformers))
    model.eval()
    sync(torch, dev)
    build_s = now() - t_build
    gen = torch.Generator(device="cpu").manual_seed(1)  # the prompt: the same ids on every device
    prompt = torch.randint(3, a.vocab, (1, a.prompt), generator=gen).to(dev)
    mask = torch.ones_like(prompt)

    def generate(n, budget_s=None):
        """Greedy, exactly n new tokens (fewer only if budget_s runs out); returns the new ids
        and the seconds from a synchronize before to one after."""
        stop = transformers.StoppingCriteriaList([TimeBudget(torch, a.prompt, budget_s)])
        sync(torch, dev)
        t = now()
        out = model.generate(prompt, attention_mask=mask, do_sample=False, max_new_tokens=n,
                             min_new_tokens=n, stopping_criteria=stop, pad_token_id=0)
        sync(torch, dev)
        took = now() - t
        return out[0, a.prompt:].tolist(), took

    with torch.inference_mode(), sdpa_choice(torch, a.attention):
        if a.warmup > 0:
            generate(a.warmup)
        if a.exact >= 0:
            t0 = now()
            if a.exact > 0:
                generate(a.exact)
            emit("hf_generate", exact=a.exact, seconds=now() - t0)
            return
        prefill = median([generate(1)[1] for _ in range(a.prefill_reps)])
        u0 = thread_usage()
        ids, total = generate(a.tokens, a.max_seconds)
        u1 = thread_usage()
    n = len(ids)
    if n < 2:
        fail("hf_generate", f"generate returned {n} new tokens")
    # noise can make a short run no longer than the prefill alone: then no decode rate
    decode = total - prefill if total > prefill else None
    if a.ids:
        with open(a.ids, "w") as f:
            f.write("".join(f"{i}\n" for i in ids))
    emit("hf_generate", tokens=n, tokens_per_s=(n - 1) / decode if decode else None,
         token_ms=decode * 1e3 / (n - 1) if decode else None,
         prefill_ms=prefill * 1e3, generate_s=total, end_to_end_tokens_per_s=n / total,
         sha256=id_digest(ids), sha256_16=id_digest(ids[:16]) if n >= 16 else None,
         gpu=gpu_name(torch, dev), transformers=transformers.__version__, torch=torch.__version__,
         params=sum(p.numel() for p in model.parameters()), build_s=build_s, prompt=a.prompt,
         attention=a.attention, attn_implementation=a.attn_implementation, dtype=a.dtype,
         **usage_fields(u0, u1, n, "token"))


if __name__ == "__main__":
    main()
