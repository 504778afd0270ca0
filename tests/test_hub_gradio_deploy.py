"""`gradio deploy`, unchanged, publishes a Space to the local Hub."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi


def test_gradio_deploy(hub, tmp_path):
    gradio = Path(sys.executable).parent / "gradio"
    if not gradio.exists():
        gradio = shutil.which("gradio")
    if not gradio:
        pytest.skip("gradio is not installed (pip install -e '.[dev]' brings it)")
    token = hub.token("spacer", write=True)
    app = tmp_path / "app"
    app.mkdir()
    (app / "README.md").write_text("---\ntitle: inspector\nsdk: gradio\napp_file: app.py\n---\n")
    (app / "app.py").write_text("import gradio as gr\ngr.Interface(str, 'text', 'text').launch()\n")
    env = {**os.environ, "HF_TOKEN": token, "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([str(gradio), "deploy"], cwd=app, env=env, capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=180)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "spaces/spacer/inspector" in out.stdout
    info = HfApi(token=token).space_info("spacer/inspector")
    assert info.sdk == "gradio"
    assert {"README.md", "app.py"} <= {s.rfilename for s in info.siblings}
