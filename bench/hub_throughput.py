"""Throughput of the local Hub as the official clients see it.

Starts `hubtools hub serve` on loopback (fsync on, as in production), then
measures with the unchanged huggingface_hub / datasets clients:
small commits per second (1 and 8 concurrent writers), LFS upload and
download MB/s, and a 100k-row `push_to_hub` + `load_dataset` round trip.

    python bench/hub_throughput.py [--out bench/hub_throughput.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".md"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hubbench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    os.environ.update(HF_ENDPOINT=url, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
                      HF_HOME=str(work / "hf"), HF_HUB_DISABLE_PROGRESS_BARS="1")  # fmt: skip
    hub = [sys.executable, "-m", "hubtools", "hub"]
    token = subprocess.run([*hub, "token", "create", "--root", str(work / "root"), "--user",
                            "bench", "--write", "--init"], capture_output=True, text=True,
                           check=True).stdout.strip()  # fmt: skip
    server = subprocess.Popen([*hub, "serve", "--root", str(work / "root"), "--port", str(port)],
                              stdout=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1.5)
    from datasets import Dataset, load_dataset
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

    api = HfApi(token=token)
    rows = []
    try:
        repo = "bench/commits"
        api.create_repo(repo, repo_type="dataset")
        n = 100
        t = timed(lambda: [api.create_commit(repo, [CommitOperationAdd(f"f{i}.txt", b"x" * 100)],
                                             commit_message=str(i), repo_type="dataset")
                           for i in range(n)])  # fmt: skip
        rows.append(("small commits, 1 writer", f"{n / t:.1f} commits/s"))

        def writer(w: int) -> None:
            for i in range(25):
                api.create_commit(repo, [CommitOperationAdd(f"w{w}/{i}.txt", b"y")],
                                  commit_message=f"{w}-{i}", repo_type="dataset")  # fmt: skip

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        t = timed(lambda: ([th.start() for th in threads], [th.join() for th in threads]))
        rows.append(("small commits, 8 writers", f"{200 / t:.1f} commits/s"))

        blob = os.urandom(200 * 1024**2)
        t = timed(lambda: api.upload_file(path_or_fileobj=blob, path_in_repo="big.bin",
                                          repo_id=repo, repo_type="dataset"))  # fmt: skip
        rows.append(("LFS upload, 200 MB file", f"{200 / t:.0f} MB/s"))
        t = timed(lambda: hf_hub_download(repo, "big.bin", repo_type="dataset",
                                          cache_dir=work / "dl"))  # fmt: skip
        rows.append(("LFS download, 200 MB file", f"{200 / t:.0f} MB/s"))

        texts = [os.urandom(256).hex() for _ in range(100_000)]  # 51 MB, barely compressible
        ds = Dataset.from_dict({"i": list(range(100_000)), "text": texts})
        t = timed(lambda: ds.push_to_hub("bench/rows", config_name="all", token=token))
        rows.append(("push_to_hub 100k rows of 512 random hex chars (51 MB)", f"{t:.1f} s"))
        api.create_tag("bench/rows", tag="v1", repo_type="dataset")
        t = timed(lambda: load_dataset("bench/rows", "all", revision="v1", split="train"))
        rows.append(("load_dataset 100k rows at a tag, cold cache", f"{t:.1f} s"))
    finally:
        server.terminate()

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in cpu if "Model name" in ln), "?")
    lines = [
        "# Local Hub throughput",
        "",
        f"Machine: {os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}. Server and client on one machine, loopback,",
        "fsync on. Produced by `python bench/hub_throughput.py`.",
        "",
        "| measurement | result |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
