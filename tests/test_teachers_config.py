"""The generate config: the shipped recipe loads; mistakes are one-line errors via the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hubtools.errors import UsageError
from hubtools.teachers import GenerateConfig, parse_shard

ROOT = Path(__file__).resolve().parents[1]


def test_recipe_loads_with_paper_defaults():
    config = GenerateConfig.load(ROOT / "recipes" / "teachers.yaml")
    assert [t.name for t in config.teachers] == ["am-thinking-v1", "qwen3-235b-a22b",
                                                 "deepseek-r1"]  # fmt: skip
    assert (config.sampling.temperature, config.sampling.top_p) == (0.6, 0.95)
    assert (config.threshold, config.max_attempts) == (0.9, 8)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("teachers: []", "non-empty list"),
        ("teachers: [{name: a, endpoint: http://x, model: m, colour: red}]", "unknown key"),
        ("teachers: [{name: a, model: m}]", "missing required key"),
        ("teachers: [{name: a, endpoint: ftp://x, model: m}]", "http(s) URL"),
        ("teachers: [{name: a, endpoint: http://x, model: m}, {name: a, endpoint: http://y, "
         "model: m}]", "unique"),
        ("teachers: [{name: a, endpoint: http://x, model: m, protocol: tgi}]", "chat_template"),
        ("teachers: [{name: a, endpoint: http://x, model: m}]\nsampling: {top_p: 1.5}", "top_p"),
        ("teachers: [{name: a, endpoint: http://x, model: m}]\nmax_attempts: 0", "max_attempts"),
        ("teachers: [oops", "not valid YAML"),
    ],
)  # fmt: skip
def test_bad_configs_are_refused_with_the_key_to_fix(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GenerateConfig.load(path)


def test_a_bad_config_is_a_one_line_cli_error(tmp_path):
    path, message = tmp_path / "run.yaml", "unknown key"
    path.write_text("teachers: [{name: a, endpoint: http://x, model: m, colour: red}]")
    (tmp_path / "q.jsonl").write_text('{"prompt": "hi"}\n')
    cli = [sys.executable, "-m", "hubtools"]
    subprocess.run([*cli, "queries", "add", str(tmp_path / "q.jsonl"), "--run",
                    str(tmp_path / "run")], check=True, capture_output=True)  # fmt: skip
    out = subprocess.run([*cli, "generate", str(tmp_path / "run"), "--config", str(path)],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr


@pytest.mark.parametrize("bad", ["3", "1/1", "a/b", "2/1", "-1/4"])
def test_parse_shard_rejects_nonsense(bad):
    with pytest.raises(UsageError, match="shard"):
        parse_shard(bad)
    assert parse_shard("3/8") == (3, 8)


def test_a_changed_teacher_config_is_refused(tmp_path):
    """Sampling is frozen per teacher in run.yaml: a changed one needs a new run."""
    from hubtools.teachers.generate import generate

    (tmp_path / "q.jsonl").write_text('{"prompt": "hi"}\n')
    from hubtools.queries import add

    add(tmp_path / "q.jsonl", tmp_path / "run")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("teachers: [{name: a, endpoint: 'http://127.0.0.1:9', model: m}]\n"
                   "sampling: {temperature: 0.6}\ndown_after_s: 0\nmax_retries: 0\n")  # fmt: skip
    generate(tmp_path / "run", cfg, progress=False)  # the endpoint is down: the teacher stops
    cfg.write_text(cfg.read_text().replace("0.6", "1.0"))
    with pytest.raises(Exception, match=r"teacher:a.sampling.temperature: 0.6 in run.yaml"):
        generate(tmp_path / "run", cfg, progress=False)
