"""`hubtools space deploy` to the local Hub, and the deployed app run from its repo alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, snapshot_download
from release_support import make_run
from space_support import start_app, stop

from hubtools.release.build import build
from hubtools.release.publish import publish

ROOT = Path(__file__).resolve().parents[1]
# `import hubtools` fails in the app's process: the Space must not need it.
NO_HUBTOOLS = "import sys; sys.modules['hubtools'] = None; import runpy; "
NO_HUBTOOLS += "runpy.run_path('app.py', run_name='__main__')"


def _hubtools(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    environ = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "hubtools", *args], capture_output=True,
                          text=True, timeout=120, env=environ)  # fmt: skip


def test_deploy_then_serve_from_the_snapshot(hub, write_token, unique_name, tmp_path):
    from gradio_client import Client

    make_run(tmp_path / "run", 20)
    specs = []
    for t in ("t1", "t2"):
        build(tmp_path / "run", teacher=t, out=tmp_path / t, parallel=["t1", "t2"],
              progress=False)  # fmt: skip
        repo = f"acme/{unique_name}-{t}"
        publish(tmp_path / t, repo=repo, version="1.0.0", token=write_token, private=t == "t2")
        specs.append(f"{repo}@v1.0.0")
    space = f"acme/{unique_name}-space"
    env = {"HF_TOKEN": write_token}
    # A revision that does not exist: refused before the Space repo is created.
    missing = specs[0].replace("@v1.0.0", "@v9.9.9")
    bad = _hubtools("space", "deploy", "--repo", space, "--datasets", missing,
                    "--endpoint", hub.url, env=env)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "v9.9.9" in bad.stderr
    api = HfApi(endpoint=hub.url, token=write_token)
    assert not api.repo_exists(space, repo_type="space")

    done = _hubtools("space", "deploy", "--repo", space, "--datasets", ",".join(specs),
                     "--endpoint", hub.url, "--json", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    info = api.space_info(space)
    assert info.sdk == "gradio"
    files = {s.rfilename for s in info.siblings}
    assert {
        "README.md",
        "app.py",
        "requirements.txt",
        "space_reader.py",
        "space_index.py",
        "space.json",
    } <= files
    commits = api.list_repo_commits(space, repo_type="space")
    assert commits[0].commit_id == result["commit"] and len(commits) == 2  # create + one commit
    folder = Path(snapshot_download(space, repo_type="space", local_dir=tmp_path / "space"))
    readme = (folder / "README.md").read_text()
    assert write_token not in "".join(p.read_text() for p in folder.glob("*.*") if p.is_file()
                                      and p.suffix in (".md", ".py", ".json", ".txt"))  # fmt: skip
    import httpx

    check = httpx.post(f"{hub.url}/api/validate-yaml",
                       json={"content": readme, "repoType": "space"})  # fmt: skip
    assert check.status_code == 200 and check.json()["errors"] == [], check.text
    assert info.card_data["sdk"] == "gradio"
    assert sorted(info.card_data["datasets"]) == sorted(s.split("@")[0] for s in specs)
    assert json.loads((folder / "space.json").read_text())["datasets"] == specs
    for line in (folder / "requirements.txt").read_text().splitlines():
        assert line.startswith("#") or "==" in line  # pinned, installable from PyPI

    # The Space started from its own files, hubtools unimportable; the token of the viewer.
    env = {"HF_TOKEN": write_token, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1",
           "HUBTOOLS_SPACE_CACHE": str(tmp_path / "cache"), "PYTHONPATH": ""}  # fmt: skip
    proc, url = start_app([sys.executable, "-c", NO_HUBTOOLS], env, tmp_path / "app.log",
                          cwd=folder)  # fmt: skip
    try:
        client = Client(url, verbose=False)
        found = client.predict(api_name="/search", page_size=100)
        assert found["total"] == 14  # the queries both teachers passed (release_support)
        query = client.predict(found["items"][0]["query_id"], api_name="/query")
        assert set(query["answers"]) == {"t1", "t2"}
    finally:
        stop(proc)
    assert "Traceback" not in (tmp_path / "app.log").read_text()


@pytest.mark.slow
def test_redeploy_is_one_more_commit(hub, write_token, unique_name, tmp_path):
    pytest.importorskip("gradio")
    make_run(tmp_path / "run", 8)
    build(tmp_path / "run", teacher="t1", out=tmp_path / "rel", progress=False)
    repo = f"acme/{unique_name}-single"
    publish(tmp_path / "rel", repo=repo, version="1.0.0", token=write_token)
    space = f"acme/{unique_name}-space"
    env = {"HF_TOKEN": write_token}
    for _ in range(2):
        done = _hubtools("space", "deploy", "--repo", space, "--datasets", f"{repo}@v1.0.0",
                         "--endpoint", hub.url, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
    api = HfApi(endpoint=hub.url, token=write_token)
    assert len(api.list_repo_commits(space, repo_type="space")) <= 3


def test_space_run_without_gradio_says_which_extra(tmp_path):
    """A plain `pip install hubtools` has no Gradio: one line naming the extra, no server."""
    code = (
        "import sys; sys.modules['gradio'] = None; from hubtools.cli import main; "
        "sys.argv = ['hubtools', 'space', 'run', '--datasets', 'acme/ds@v1.0.0', "
        "'--endpoint', 'http://127.0.0.1:9']; main()"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUBTOOLS_SPACE_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: serving the Space needs gradio: pip install 'hubtools[space]'"
    ]
