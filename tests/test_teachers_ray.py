"""`--executor ray`: every shard a Ray task on a local cluster, one database per shard."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from hubtools.records import Query
from hubtools.run import Run
from hubtools.status import status
from tests.servers.chat_server import ChatServer, Reply

pytest.importorskip("ray", reason="--executor ray needs the ray extra (pip install -e '.[dev]')")


@pytest.mark.slow
def test_generate_shards_as_ray_tasks(tmp_path):
    problems = {f"What is {i} * 2?": str(2 * i) for i in range(16)}
    run = Run.create(tmp_path / "run", {})
    run.add_queries(Query.from_prompt(p, category="math", source="t", reference=r)
                    for p, r in problems.items())  # fmt: skip

    def responder(body):
        return Reply(f"$\\boxed{{{problems[body['messages'][-1]['content']]}}}$")

    with ChatServer(responder) as server:
        config = tmp_path / "run.yaml"
        config.write_text(f"teachers: [{{name: t, endpoint: '{server.url}', model: m}}]\n")
        out = subprocess.run(
            [sys.executable, "-m", "hubtools", "generate", str(run.path), "--config", str(config),
             "--executor", "ray", "--shards", "3", "--quiet"],
            capture_output=True, text=True, timeout=300,
            env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},  # a local cluster
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        assert len(server.chat_requests) == 16
    assert sorted(p.name for p in (run.path / "db").glob("shard-*.sqlite")) == [
        f"shard-0000{i}-of-00003.sqlite" for i in range(3)
    ]
    result = status(run.path)
    assert (result.shards, result.teachers["t"].passed) == (3, 16)
    assert len(re.findall(r"shard \d/3 in", out.stdout)) == 3  # one summary per shard
