"""Releases and a running Space app for the Space tests (real data, real servers)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import free_port, shared_path

ROOT = Path(__file__).resolve().parents[1]
TEACHERS = ("r10528", "q3_235b-think", "QwQ-32b")  # three of the four real teachers
ARTIFACTS = ROOT / "test-artifacts"  # git-ignored: the browser test's screenshots


def misguided_releases(top: Path, hub, token: str, name: str) -> list[str]:
    """The real traces of three teachers imported, built as parallel releases, published."""
    from test_analysis import _jsonl

    from hubtools.release.build import build
    from hubtools.release.importer import import_outputs
    from hubtools.release.publish import publish

    folder = shared_path("data", "teachers", "misguided_attention")
    run = top / "run"
    for model in TEACHERS:
        import_outputs(_jsonl(folder, model, top / f"{model}.jsonl"), run=run, teacher=model,
                       progress=False)  # fmt: skip
    _score(run)
    specs = []
    for t in TEACHERS:
        out = top / f"rel-{t}"
        build(
            run, teacher=t, out=out, parallel=list(TEACHERS), progress=False, max_shard_rows=8
        )  # fmt: skip  (several files and row groups)
        repo = f"acme/{name}-{t.replace('_', '-')}"
        publish(out, repo=repo, version="1.0.0", token=token, private=t == "QwQ-32b")
        specs.append(f"{repo}@v1.0.0")
    return specs


def _score(run: Path) -> None:
    """What `hubtools score` stores, with word counts and a stand-in perplexity (as
    tests/test_analysis.py does): the rows then carry ppl, and builds draw the figures."""
    from test_analysis import _ppl

    from hubtools.records import ResponseScore
    from hubtools.run import Run

    scores = []
    with Run.open(run).store() as store:
        for t in TEACHERS:
            for a, _ in store.iter_passed(t, 0.9):
                think, answer = len((a.think or "").split()), len((a.answer or "").split())
                scores.append(ResponseScore(
                    query_id=a.query_id, teacher=t, attempt=a.attempt, scorer="stand-in",
                    backend="test", ppl=_ppl(a.answer), scored_tokens=think + answer,
                    think_tokens=think, answer_tokens=answer, total_tokens=think + answer,
                    token_source="words",
                ))  # fmt: skip
        store.add_scores(scores)


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the app did not start:\n{log.read_text()}")


def start_app(command: list[str], env: dict[str, str], log: Path, cwd: Path | None = None):
    """A Space app process on a free loopback port: (process, url)."""
    port = free_port()
    env = {**os.environ, **env, "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    command = [a.replace("{port}", str(port)) for a in command]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        wait_port(port, proc, log)
    except RuntimeError:
        proc.kill()
        raise
    return proc, f"http://127.0.0.1:{port}/"


def hubtools_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hubtools", *args]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
