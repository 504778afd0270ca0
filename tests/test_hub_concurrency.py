"""Concurrent commits to one repo serialize: none lost, stale parents get 412."""

from __future__ import annotations

import threading

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

WRITERS, COMMITS_EACH = 8, 25


def test_concurrent_writers_lose_nothing(hub, write_token, unique_name):
    api = HfApi(endpoint=hub.url, token=write_token)
    repo = f"alice/{unique_name}"
    api.create_repo(repo, repo_type="dataset")
    accepted: dict[str, tuple[int, int]] = {}
    rejected, unexpected = [], []
    lock = threading.Lock()

    def writer(w: int) -> None:
        for c in range(COMMITS_EACH):
            while True:
                head = api.list_repo_refs(repo, repo_type="dataset").branches[0].target_commit
                op = CommitOperationAdd(f"w{w}/c{c}.txt", f"writer {w} commit {c}".encode())
                try:
                    info = api.create_commit(
                        repo, [op], commit_message=f"w{w} c{c}", repo_type="dataset",
                        parent_commit=head,
                    )  # fmt: skip
                except HfHubHTTPError as e:
                    with lock:
                        (rejected if e.response.status_code == 412 else unexpected).append(e)
                    if e.response.status_code != 412:
                        return
                    continue
                with lock:
                    accepted[info.oid] = (w, c)
                break

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert unexpected == []
    assert len(accepted) == WRITERS * COMMITS_EACH
    history = [c.commit_id for c in api.list_repo_commits(repo, repo_type="dataset")]
    assert set(accepted) <= set(history)
    assert len(history) == WRITERS * COMMITS_EACH + 1  # + the initial .gitattributes commit
    assert len(history) == len(set(history))
    files = set(api.list_repo_files(repo, repo_type="dataset"))
    assert {f"w{w}/c{c}.txt" for w in range(WRITERS) for c in range(COMMITS_EACH)} <= files
    # Eight writers racing on one branch must have collided; every collision was a 412.
    assert rejected, "no writer ever saw a stale parentCommit"
    assert all("head of the branch" in str(e) or e.response.status_code == 412 for e in rejected)
