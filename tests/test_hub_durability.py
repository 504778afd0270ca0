"""A local Hub killed with SIGKILL mid-stream keeps every acknowledged commit."""

from __future__ import annotations

import random
import subprocess
import threading
import time

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.utils import close_session

ROUNDS, WRITERS = 3, 4


def _writer(api: HfApi, repo: str, w: int, acked: list, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        text = f"round-robin writer {w} commit {n}\n".encode()
        # Every third commit carries an LFS file (parquet pattern) to cover both paths.
        path = f"w{w}/{n}.parquet" if n % 3 == 0 else f"w{w}/{n}.txt"
        try:
            info = api.create_commit(
                repo, [CommitOperationAdd(path, text)], commit_message=f"w{w} n{n}",
                repo_type="dataset",
            )  # fmt: skip
        except Exception:
            return  # the server died under us: this commit was never acknowledged
        acked.append((info.oid, path, text))


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_sigkill_during_commits_keeps_acknowledged(fresh_hub, tmp_path, round_):
    server = fresh_hub.start()
    token = server.token("alice", write=True)
    api = HfApi(endpoint=server.url, token=token)
    repo = "alice/durable"
    api.create_repo(repo, repo_type="dataset")

    acked: list = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_writer, args=(api, repo, w, acked, stop)) for w in range(WRITERS)
    ]
    for t in threads:
        t.start()
    time.sleep(random.Random(round_).uniform(0.8, 2.0))
    server.kill()  # SIGKILL while commits are in flight
    acked_before_kill = len(acked)
    # Restart at once: the clients' own retries (huggingface_hub backs off on connection
    # errors) reach the new process, as they would in production.
    server.start()
    stop.set()
    for t in threads:
        t.join()
    close_session()  # pooled keep-alive connections still point at the dead process
    assert acked_before_kill > 5, "the stream of commits never got going"

    history = {c.commit_id for c in api.list_repo_commits(repo, repo_type="dataset")}
    missing = [oid for oid, _, _ in acked if oid not in history]
    assert missing == [], f"{len(missing)} acknowledged commits lost"
    for _, path, text in random.Random(0).sample(acked, min(12, len(acked))):
        local = hf_hub_download(repo, path, repo_type="dataset", endpoint=server.url,
                                token=token, cache_dir=tmp_path / f"cache-{round_}")  # fmt: skip
        assert open(local, "rb").read() == text
    repo_dir = server.root / "repos" / "datasets" / "alice" / "durable.git"
    fsck = subprocess.run(["git", "-C", str(repo_dir), "fsck", "--full", "--strict"],
                          capture_output=True, text=True)  # fmt: skip
    assert fsck.returncode == 0, fsck.stderr
    # The repo still takes commits on top of what survived.
    api.create_commit(repo, [CommitOperationAdd("after.txt", b"ok")], commit_message="after",
                      repo_type="dataset")  # fmt: skip


def test_stale_git_lock_from_a_killed_writer_is_recovered(fresh_hub):
    """Killed between git's `main.lock` write and its rename: the branch is intact and the
    next commit must not fail on the leftover lock (the SIGKILL test hits this by chance)."""
    server = fresh_hub.start()
    api = HfApi(endpoint=server.url, token=server.token("alice", write=True))
    api.create_repo("alice/locked", repo_type="dataset")
    head = api.list_repo_refs("alice/locked", repo_type="dataset").branches[0].target_commit
    server.kill()
    refs = server.root / "repos" / "datasets" / "alice" / "locked.git" / "refs"
    (refs / "heads" / "main.lock").write_text("0" * 40 + "\n")  # what the dead writer left
    (refs / "tags").mkdir(exist_ok=True)
    (refs / "tags" / "v1.lock").write_text("0" * 40 + "\n")
    server.start()
    close_session()
    assert api.list_repo_refs("alice/locked", repo_type="dataset").branches[0].target_commit == head
    info = api.create_commit("alice/locked", [CommitOperationAdd("x.txt", b"x")],
                             commit_message="after the crash", repo_type="dataset")  # fmt: skip
    api.create_tag("alice/locked", tag="v1", repo_type="dataset")
    assert api.list_repo_refs("alice/locked", repo_type="dataset").tags[0].target_commit == info.oid
    assert not (refs / "heads" / "main.lock").exists()
