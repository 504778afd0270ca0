"""A publish killed while its LFS uploads are in flight leaves the previous version served."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time

from datasets import load_dataset
from huggingface_hub import HfApi
from release_support import make_run

from hubtools.records import Attempt, Query, Verdict
from hubtools.release.build import build
from hubtools.release.publish import publish


def _big_run(path, rows=1600, size=24_000):
    """Rows of incompressible reasoning (base64 of random bytes): ~60 MB of Parquet."""
    run = make_run(path, 8, teachers=("t1",))
    queries = [Query.from_prompt(f"Big question {i}", category="math", source="big",
                                 reference="1") for i in range(rows)]  # fmt: skip
    run.add_queries(queries)
    with run.store() as store:
        for start in range(0, rows, 200):
            chunk = queries[start : start + 200]
            store.add_attempts(
                Attempt(query_id=q.query_id, teacher="t1", attempt=0, answer="1",
                        think=base64.b64encode(os.urandom(size * 3 // 4)).decode())
                for q in chunk
            )  # fmt: skip
            store.add_verdicts(
                Verdict(query_id=q.query_id, teacher="t1", attempt=0, verifier="x", score=1.0)
                for q in chunk
            )  # fmt: skip
    return run


def _in_flight(hub_root, before) -> bool:
    """An LFS upload is being received (temp file) or an object landed since ``before``."""
    tmp = list((hub_root / "tmp").glob("lfs-*")) if (hub_root / "tmp").exists() else []
    return bool(tmp) or _objects(hub_root) != before


def _objects(hub_root) -> set[str]:
    return {p.name for p in (hub_root / "lfs" / "objects").rglob("*") if p.is_file()}


def test_killed_publish_keeps_the_previous_version_and_reruns(hub, write_token, unique_name,
                                                              tmp_path):  # fmt: skip
    repo, api = f"acme/{unique_name}", HfApi(token=write_token)
    small = build(make_run(tmp_path / "small", 8).path, teacher="t1", out=tmp_path / "v1",
                  progress=False)  # fmt: skip
    first = publish(tmp_path / "v1", repo=repo, version="1.0.0", token=write_token)
    big = build(_big_run(tmp_path / "big").path, teacher="t1", out=tmp_path / "v2",
                max_shard_bytes=12 * 1024**2, progress=False)  # fmt: skip
    assert big.bytes > 40e6 and len([f for f in big.files if f.endswith(".parquet")]) >= 4

    before = _objects(hub.root)
    env = {**os.environ, "HF_TOKEN": write_token}
    command = [sys.executable, "-m", "hubtools", "publish", str(tmp_path / "v2"), "--repo", repo,
               "--version", "1.1.0"]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _in_flight(hub.root, before):
        assert proc.poll() is None, "the publish ended before its uploads were seen"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    refs = api.list_repo_refs(repo, repo_type="dataset")
    assert [b.target_commit for b in refs.branches if b.name == "main"] == [first.commit]
    assert [t.name for t in refs.tags] == ["v1.0.0"]
    ds = load_dataset(repo, "all", split="train", revision="v1.0.0", token=write_token)
    assert ds.num_rows == small.rows["all"]

    rerun = publish(tmp_path / "v2", repo=repo, version="1.1.0", token=write_token)
    assert rerun.action == "published" and rerun.parent == first.commit
    ds = load_dataset(repo, "math", split="train", revision="v1.1.0", token=write_token)
    assert ds.num_rows == big.rows["math"]
