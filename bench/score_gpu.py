"""``hubtools score``'s local backend on a GPU: tokens/s and memory for 0.5B and 32B scorers.

Measures the GPU path the README promises (bf16, token-budget packing, the LM head on
response positions only, a chunk at a time) against the usual per-sample loop (one
forward per sample, full logits, ``labels`` masked with -100), on the shapes of
Qwen2.5-0.5B and Qwen2.5-32B (the paper's scorer is a 32B model) with random weights
made on the GPU: a lent GPU machine reaches no hub, and throughput does not depend on
the weights' values. Sequences follow the paper's length profile: prompts of ~100-300
tokens, responses log-normal around 2,000 tokens (mean ~3,000), capped at 16k.

Prints one JSON line per measurement (and writes them to ``--out``):

    python bench/score_gpu.py --out $OUT/score_gpu.jsonl [--sizes 0.5b,32b]

Results and the machine: bench/score_local.md ("On a GPU").
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hubtools.quality.backends.base import ScoreRequest  # noqa: E402
from hubtools.quality.backends.local import LocalBackend  # noqa: E402

SHAPES = {  # the published configs of Qwen2.5-0.5B and Qwen2.5-32B (config.json)
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                 tie_word_embeddings=True),
    "32b": dict(hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
                num_attention_heads=40, num_key_value_heads=8, vocab_size=152064,
                tie_word_embeddings=False),
}  # fmt: skip


def requests(n: int, vocab: int, seed: int = 0) -> list[ScoreRequest]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = rng.randint(100, 300)
        response = min(16_000, max(200, int(rng.lognormvariate(7.6, 0.8))))
        ids = [rng.randrange(vocab) for _ in range(prompt + response)]
        out.append(ScoreRequest(ids[:prompt], ids[prompt:], ""))
    return out


def model(shape: dict) -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**shape, max_position_embeddings=32768)
    config._attn_implementation = "sdpa"
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            net = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(torch.float32)
    return net.eval()


def backend(net: torch.nn.Module, budget: int) -> LocalBackend:
    """The stage's backend around a model made here (its loader reads a folder or the Hub)."""
    scorer = object.__new__(LocalBackend)
    scorer._net, scorer.tokenizer, scorer.model = net, None, "random"
    scorer.device, scorer.dtype = torch.device("cuda"), torch.bfloat16
    scorer.max_batch_tokens, scorer.chunk, scorer._pad = budget, 1024, 0
    return scorer


def peer(net: torch.nn.Module, batch: list[ScoreRequest]) -> list[float]:
    out = []
    with torch.inference_mode():
        for r in batch:
            ids = torch.tensor([r.prompt_ids + r.response_ids], device="cuda")
            labels = ids.clone()
            labels[0, : len(r.prompt_ids)] = -100
            out.append(float(net(input_ids=ids, labels=labels).loss) * len(r.response_ids))
    return out


def timed(fn, batch: list[ScoreRequest]) -> tuple[list[float], dict]:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = fn(batch)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(len(r.prompt_ids) + len(r.response_ids) for r in batch)
    return result, {
        "samples": len(batch), "tokens": tokens, "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds), "peak_gpu_gib":
        round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0.5b,32b")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    plan = {"0.5b": (400, 60, 131072), "32b": (48, 12, 32768)}  # samples, peer's, budget
    lines = []

    def emit(row: dict) -> None:
        print(json.dumps(row), flush=True)
        lines.append(row)
        if args.out:
            args.out.write_text("".join(json.dumps(r) + "\n" for r in lines))

    emit({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__})
    for size in args.sizes.split(","):
        samples, peer_samples, budget = plan[size]
        start = time.perf_counter()
        net = model(SHAPES[size])
        params = sum(p.numel() for p in net.parameters())
        emit({"size": size, "params_b": round(params / 1e9, 2),
              "made_in_s": round(time.perf_counter() - start, 1)})  # fmt: skip
        batch = requests(samples, SHAPES[size]["vocab_size"])
        scorer = backend(net, budget)
        scorer.score_sync(batch[:4])  # warm-up
        ours, row = timed(scorer.score_sync, batch)
        emit({"size": size, "variant": "hubtools", "max_batch_tokens": budget, **row})
        sub = batch[:peer_samples]
        peer(net, sub[:2])
        theirs, row = timed(functools.partial(peer, net), sub)
        emit({"size": size, "variant": "peer", **row})
        ours_sub = [x.nll_sum for x in scorer.score_sync(sub)]
        worst = max(abs(a - b) / abs(b) for a, b in zip(ours_sub, theirs, strict=True))
        emit({"size": size, "max_rel_diff_nll_vs_peer_bf16": worst})
        del net, scorer
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
