"""One perplexity whichever backend computed it: the same run scored by `hubtools score`
with the local model and through TGI-, vLLM- and SGLang-style servers that compute with
the same model in-process gives the same ppl (relative difference < 1e-3)."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.servers.logprob_server import LogprobServer, ModelScorer  # noqa: E402
from tests.test_quality_score import hubtools, make_run, score_rows  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.tiny_models import make_model

    return make_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen2")


@pytest.mark.slow
def test_every_backend_gives_the_local_perplexity(tiny, tmp_path):
    base = make_run(tmp_path, 24)
    local = tmp_path / "local"
    shutil.copytree(base, local)
    done = hubtools("score", str(local), "--model", str(tiny), "--quiet")
    assert done.returncode == 0, done.stderr
    expected = score_rows(local)
    assert expected and all(row[1] == "local" for row in expected.values())
    scorer = ModelScorer(tiny)
    for flavor in ("tgi", "vllm", "sglang"):
        run = tmp_path / flavor
        shutil.copytree(base, run)
        with LogprobServer(scorer, flavor=flavor, model="tiny") as server:
            done = hubtools(
                "score", str(run), "--backend", flavor, "--endpoint", server.url,
                "--model", "tiny", "--tokenizer", str(tiny), "--quiet",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert server.scored > 0
        got = score_rows(run)
        assert got.keys() == expected.keys()
        for key, (scorer_name, backend, ppl, nll, *counts) in got.items():
            want = expected[key]
            assert (scorer_name, backend) == ("tiny", flavor)
            assert abs(ppl - want[2]) / want[2] < 1e-3, (flavor, key, ppl, want[2])
            assert abs(nll - want[3]) / want[3] < 1e-3
            assert counts == list(want[4:]), (flavor, key)  # same tokens, same counts
