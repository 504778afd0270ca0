"""Every verb of the CLI, given bad input: a documented exit code, one line, no traceback.

Each case runs ``python -m hubtools ...`` as a user would, against real files and runs
made here. The cases run in parallel once per module; each test below checks one. A verb
without a case fails ``test_every_verb_has_bad_input_cases``: new verbs join this table.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hubtools.errors import EXIT_FAILED, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]
USAGE, FAILED = EXIT_USAGE, EXIT_FAILED
GOOD_CONFIG = "teachers: [{name: t, endpoint: 'http://127.0.0.1:9', model: m}]\n"
OUTPUTS = [
    {"prompt": "What is 1 + 1?", "category": "math", "reference": "2",
     "output": "<think>1 + 1 = 2.</think>The answer is $\\boxed{2}$."},
    {"prompt": "Say hi.", "category": "chat", "score": 1.0, "verifier": "llm-judge",
     "output": "<think>Greet.</think>Hi!"},
]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """``args`` with ``{name}`` placeholders for the paths the ``world`` fixture made."""

    id: str
    args: tuple[str, ...]
    code: int = USAGE
    absent: tuple[str, ...] = ()  # paths (placeholders too) that must not exist afterwards
    env: dict[str, str] = field(default_factory=dict)


def case(id: str, command: str, *, code=USAGE, absent=(), env=None) -> Case:
    """``command`` is split as a shell would (quotes keep spaces and empty values)."""
    return Case(id, tuple(shlex.split(command)), code, tuple(absent), env or {})


# fmt: off
CASES = [
    # -- hub serve: `hub serve --root` is the command that creates a local Hub
    case("serve-root-is-a-file", "hub serve --root {file} --port 0"),
    case("serve-root-under-a-file", "hub serve --root {file}/hub --port 0"),
    case("serve-port-out-of-range", "hub serve --root {new} --port 99999", absent=["{new}"]),
    case("serve-port-negative", "hub serve --root {new} --port -1", absent=["{new}"]),
    case("serve-port-not-a-number", "hub serve --root {new} --port abc", absent=["{new}"]),
    case("serve-unknown-log-level", "hub serve --root {new} --log-level loud", absent=["{new}"]),
    case("serve-bad-host", "hub serve --root {new} --host 999.1.1.1", absent=["{new}"]),
    case("serve-body-limit-zero", "hub serve --root {new} --max-body-mb 0", absent=["{new}"]),
    # -- hub token create: needs an existing Hub (made by `hub serve`), or --init
    case("token-root-missing", "hub token create --root {new} --user bob", absent=["{new}"]),
    case("token-root-is-a-file", "hub token create --root {file} --user bob"),
    case("token-root-not-a-hub", "hub token create --root {dir} --user bob",
         absent=["{dir}/auth.sqlite"]),
    case("token-bad-user", "hub token create --root {hub} --user bad--name"),
    case("token-bad-org", "hub token create --root {hub} --user bob --org -org"),
    case("token-init-bad-user", "hub token create --root {new} --user '' --init",
         absent=["{new}"]),
    # -- hub env
    case("env-not-a-url", "hub env --endpoint notaurl"),
    case("env-not-http", "hub env --endpoint ftp://example.org"),
    case("env-bad-port", "hub env --endpoint http://127.0.0.1:99999"),
    case("env-no-host", "hub env --endpoint http://"),
    # -- queries add
    case("add-missing-file", "queries add {missing} --run {new}", absent=["{new}"]),
    case("add-directory-as-file", "queries add {dir} --run {new}", absent=["{new}"]),
    case("add-empty-file", "queries add {empty} --run {new}", absent=["{new}"]),
    case("add-unknown-file-type", "queries add {file} --run {new}", absent=["{new}"]),
    case("add-bad-line", "queries add {badlines} --run {new}", absent=["{new}"]),
    case("add-unknown-category", "queries add {queries} --run {new} --category bogus",
         absent=["{new}"]),
    case("add-run-unwritable", "queries add {queries} --run /proc/hubtools-run"),
    case("add-run-under-a-file", "queries add {queries} --run {file}/run"),
    case("add-not-utf8", "queries add {binlines} --run {new}", absent=["{new}"]),
    case("add-corrupt-parquet", "queries add {badparquet} --run {new}", absent=["{new}"]),
    case("add-missing-argument", "queries add --run {new}", absent=["{new}"]),
    case("add-run-is-a-file", "queries add {queries} --run {file}"),
    # -- queries pull
    case("pull-config-missing", "queries pull --config {missing} --run {new}", absent=["{new}"]),
    case("pull-config-malformed", "queries pull --config {badyaml} --run {new}",
         absent=["{new}"]),
    case("pull-config-directory", "queries pull --config {dir} --run {new}", absent=["{new}"]),
    case("pull-config-wrong-kind", "queries pull --config {genconfig} --run {new}",
         absent=["{new}"]),
    case("pull-config-binary", "queries pull --config {binary} --run {new}", absent=["{new}"]),
    case("pull-config-empty", "queries pull --config {empty} --run {new}", absent=["{new}"]),
    case("pull-run-unwritable", "queries pull --config {sources} --run /proc/hubtools-run"),
    case("pull-chunk-rows-zero", "queries pull --config {genconfig} --run {new} --chunk-rows 0",
         absent=["{new}"]),
    # -- queries clean
    case("clean-shard-reversed", "queries clean --run {run} --shard 3/2"),
    case("clean-shard-letters", "queries clean --run {run} --shard a/b"),
    case("clean-shard-zero", "queries clean --run {run} --shard 0/0"),
    case("clean-nothing-pulled", "queries clean --run {run}"),
    case("clean-unknown-benchmark", "queries clean --run {run} --benchmarks nosuch"),
    case("clean-threshold-out-of-range", "queries clean --run {run} --embedding-threshold 7"),
    case("clean-workers-zero", "queries clean --run {run} --workers 0"),
    case("clean-run-is-a-file", "queries clean --run {file}"),
    # -- queries export
    case("export-out-is-a-directory", "queries export --run {run} --out {dir}"),
    case("export-out-folder-missing", "queries export --run {run} --out {new}/sub/out.jsonl",
         absent=["{new}"]),
    case("export-out-unwritable", "queries export --run {run} --out /proc/hubtools.jsonl"),
    case("export-nothing-removed", "queries export --run {run} --out {new}.jsonl --removed",
         absent=["{new}.jsonl"]),
    case("export-run-is-a-file", "queries export --run {file} --out {new}.jsonl",
         absent=["{new}.jsonl"]),
    case("export-run-missing", "queries export --run {new} --out {new}.jsonl",
         absent=["{new}", "{new}.jsonl"]),
    # -- generate
    case("generate-config-missing", "generate {run} --config {missing}"),
    case("generate-config-malformed", "generate {run} --config {badyaml}"),
    case("generate-config-directory", "generate {run} --config {dir}"),
    case("generate-config-wrong-kind", "generate {run} --config {queries}"),
    case("generate-config-bad-endpoint", "generate {run} --config {badendpoint}"),
    case("generate-config-binary", "generate {run} --config {binary}"),
    case("generate-config-bad-type", "generate {run} --config {badtype}"),
    case("generate-unknown-executor", "generate {run} --config {genconfig} --executor foo"),
    case("generate-shard-reversed", "generate {run} --config {genconfig} --shard 3/2"),
    case("generate-shard-letters", "generate {run} --config {genconfig} --shard a/b"),
    case("generate-shard-zero", "generate {run} --config {genconfig} --shard 0/0"),
    case("generate-shards-zero", "generate {run} --config {genconfig} --executor ray --shards 0"),
    case("generate-shards-without-ray", "generate {run} --config {genconfig} --shards 2"),
    case("generate-run-missing", "generate {new} --config {genconfig}", absent=["{new}"]),
    case("generate-run-is-a-file", "generate {file} --config {genconfig}"),
    # -- verify
    case("verify-shard-reversed", "verify {run} --shard 3/2"),
    case("verify-shard-letters", "verify {run} --shard a/b"),
    case("verify-shard-zero", "verify {run} --shard 0/0"),
    case("verify-nothing-given", "verify"),
    case("verify-workers-zero", "verify {run} --workers 0"),
    case("verify-input-missing", "verify --input {missing} --output {new}.jsonl",
         absent=["{new}.jsonl"]),
    case("verify-input-directory", "verify --input {dir} --output {new}.jsonl",
         absent=["{new}.jsonl"]),
    case("verify-input-empty", "verify --input {empty} --output {new}.jsonl",
         absent=["{new}.jsonl"]),
    case("verify-input-not-utf8", "verify --input {binlines} --output {new}.jsonl",
         absent=["{new}.jsonl"]),
    case("verify-judge-model-alone", "verify --input {outputs} --output {new}.jsonl "
         "--judge-model m", absent=["{new}.jsonl"]),
    case("verify-output-unwritable", "verify --input {outputs} --output /proc/hubtools.jsonl"),
    case("verify-run-is-a-file", "verify {file}"),
    case("verify-unknown-teacher", "verify {run} --teacher nobody"),
    case("verify-output-folder-missing", "verify --input {outputs} --output {new}/sub/out.jsonl",
         absent=["{new}"]),
    case("verify-output-is-a-directory", "verify --input {outputs} --output {dir}"),
    # -- score: the config, the run and the model checked before a score is written
    case("score-unknown-backend", "score {run} --backend fancy --model org/m"),
    case("score-no-model", "score {run}"),
    case("score-model-folder-missing", "score {run} --model {missing}"),
    case("score-model-is-a-file", "score {run} --model {file}"),
    case("score-folder-not-a-model", "score {run} --model {dir}"),
    case("score-gguf-not-in-folder", "score {failedrun} --model {dir} --gguf-file m.gguf"),
    case("score-shard-out-of-range", "score {run} --model org/m --shard 2/2"),
    case("score-shard-letters", "score {run} --model org/m --shard a/b"),
    case("score-run-is-a-file", "score {file} --model org/m"),
    case("score-run-missing", "score {new} --model org/m", absent=["{new}"]),
    case("score-unknown-teacher", "score {run} --model org/m --teacher nobody"),
    case("score-endpoint-not-a-url", "score {run} --backend vllm --model m --endpoint notaurl"),
    case("score-remote-without-endpoint", "score {run} --backend tgi --model m"),
    case("score-local-with-endpoint", "score {run} --model org/m --endpoint http://127.0.0.1:9"),
    case("score-unknown-device", "score {run} --model org/m --device tpu"),
    case("score-batch-tokens-zero", "score {run} --model org/m --max-batch-tokens 0"),
    # -- build
    case("build-out-not-empty", "build {run} --teacher t1 --out {release}"),
    case("build-out-is-a-file", "build {run} --teacher t1 --out {file}"),
    case("build-threshold-out-of-range", "build {run} --teacher t1 --out {new} --threshold 5",
         absent=["{new}"]),
    case("build-shard-size-zero", "build {run} --teacher t1 --out {new} --max-shard-mb 0",
         absent=["{new}"]),
    case("build-out-unwritable", "build {run} --teacher t1 --out /proc/hubtools-release"),
    case("build-run-is-a-file", "build {file} --teacher t1 --out {new}", absent=["{new}"]),
    case("build-unknown-card", "build {run} --teacher t1 --out {new} --card fancy",
         absent=["{new}"]),
    case("build-unknown-teacher", "build {run} --teacher nobody --out {new}", absent=["{new}"]),
    case("build-no-passed-rows", "build {failedrun} --teacher t1 --out {new}", code=FAILED,
         absent=["{new}"]),
    # -- publish: checked before any upload, and before the embedded Hub starts
    case("publish-repo-leading-dash", "publish {release} --repo -acme/x --version 1.0.0 "
         "--hub local", absent=["{new}"], env={"HUBTOOLS_HUB_ROOT": "{new}"}),
    case("publish-repo-double-dot", "publish {release} --repo acme/x..y --version 1.0.0 "
         "--hub local", absent=["{new}"], env={"HUBTOOLS_HUB_ROOT": "{new}"}),
    case("publish-repo-no-namespace", "publish {release} --repo acme --version 1.0.0 --dry-run"),
    case("publish-repo-too-deep", "publish {release} --repo a/b/c --version 1.0.0 --dry-run"),
    case("publish-version-short", "publish {release} --repo local/x --version 1.0 --hub local",
         absent=["{new}"], env={"HUBTOOLS_HUB_ROOT": "{new}"}),
    case("publish-version-word", "publish {release} --repo local/x --version latest --dry-run"),
    case("publish-folder-is-a-file", "publish {file} --repo local/x --version 1.0.0 "
         "--hub local", absent=["{new}"], env={"HUBTOOLS_HUB_ROOT": "{new}"}),
    case("publish-folder-not-a-release", "publish {dir} --repo local/x --version 1.0.0 "
         "--dry-run"),
    case("publish-folder-missing", "publish {missing} --repo local/x --version 1.0.0 "
         "--dry-run"),
    case("publish-unknown-hub", "publish {release} --repo local/x --version 1.0.0 --hub remote"),
    case("publish-endpoint-not-a-url", "publish {release} --repo acme/x --version 1.0.0 "
         "--endpoint notaurl --dry-run"),
    case("publish-hub-and-endpoint", "publish {release} --repo acme/x --version 1.0.0 "
         "--hub local --endpoint http://127.0.0.1:9"),
    # -- import
    case("import-missing-file", "import {missing} --run {new} --teacher t", absent=["{new}"]),
    case("import-empty-file", "import {empty} --run {new} --teacher t", absent=["{new}"]),
    case("import-directory-as-file", "import {dir} --run {new} --teacher t", absent=["{new}"]),
    case("import-not-utf8", "import {binlines} --run {new} --teacher t", absent=["{new}"]),
    case("import-bad-teacher-name", "import {outputs} --run {new} --teacher 'bad name/x'",
         absent=["{new}"]),
    case("import-unknown-category", "import {outputs} --run {new} --teacher t --category bogus",
         absent=["{new}"]),
    case("import-workers-zero", "import {outputs} --run {new} --teacher t --workers 0",
         absent=["{new}"]),
    case("import-run-unwritable", "import {outputs} --run /proc/hubtools-run --teacher t"),
    case("import-run-is-a-file", "import {outputs} --run {file} --teacher t"),
    # -- analyze: checked before any figure is drawn or folder made
    case("analyze-unknown-teacher", "analyze {run} --teachers t1,nobody --out {new}",
         absent=["{new}"]),
    case("analyze-out-is-a-file", "analyze {run} --teachers t1 --out {file}"),
    case("analyze-out-unwritable", "analyze {run} --teachers t1 --out /proc/hubtools-figures"),
    case("analyze-run-is-a-file", "analyze {file} --teachers t1 --out {new}", absent=["{new}"]),
    case("analyze-run-missing", "analyze {new} --teachers t1 --out {new}-out",
         absent=["{new}", "{new}-out"]),
    case("analyze-no-teachers", "analyze {run} --out {new}", absent=["{new}"]),
    case("analyze-teacher-twice", "analyze {run} --teachers t1,t1 --out {new}",
         absent=["{new}"]),
    case("analyze-nothing-given", "analyze --out {new}", absent=["{new}"]),
    case("analyze-run-and-releases", "analyze {run} --teachers t1 --releases acme/a --out {new}",
         absent=["{new}"]),
    case("analyze-bad-release-spec", "analyze --releases notarepo --out {new}",
         absent=["{new}"]),
    case("analyze-bad-release-repo-id", "analyze --releases acme/x..y@v1.0.0 --out {new}",
         absent=["{new}"]),
    case("analyze-release-twice", "analyze --releases acme/a@v1,acme/a@v1 --out {new}",
         absent=["{new}"]),
    case("analyze-endpoint-with-run", "analyze {run} --teachers t1 --out {new} "
         "--endpoint http://127.0.0.1:9", absent=["{new}"]),
    case("analyze-threshold-out-of-range", "analyze {run} --teachers t1 --out {new} "
         "--threshold 2", absent=["{new}"]),
    case("analyze-missing-tokenizer", "analyze {run} --teachers t1 --out {new}",
         absent=["{new}"]),
    case("analyze-bad-tokenizer", "analyze {run} --teachers t1 --out {new} --tokenizer {dir}",
         absent=["{new}"]),
    case("analyze-nothing-passed", "analyze {failedrun} --teachers t1 --out {new}", code=FAILED,
         absent=["{new}"]),
    # -- space: the datasets are checked before anything is written or served
    case("space-deploy-bad-spec", "space deploy --repo acme/viewer --datasets 'not a spec'"),
    case("space-deploy-bad-repo", "space deploy --repo acme/x..y --datasets acme/a@v1.0.0"),
    case("space-deploy-dataset-twice", "space deploy --repo acme/v --datasets acme/a@v1,acme/a@v1"),
    case("space-deploy-endpoint-not-a-url", "space deploy --repo acme/v --datasets acme/a@v1 "
         "--endpoint notaurl"),
    case("space-deploy-hub-unreachable", "space deploy --repo acme/v --datasets acme/a@v1 "
         "--endpoint http://127.0.0.1:9", code=FAILED),
    case("space-run-bad-spec", "space run --datasets acme"),
    case("space-run-port-out-of-range", "space run --datasets acme/a@v1 --port 99999"),
    case("space-run-hub-unreachable", "space run --datasets acme/a@v1 --endpoint "
         "http://127.0.0.1:9", code=FAILED),
    # -- demo
    case("demo-root-is-a-file", "demo --root {file}"),
    case("demo-root-under-a-file", "demo --root {file}/hub"),
    # -- status
    case("status-run-is-a-file", "status {file}"),
    case("status-run-missing", "status {new}", absent=["{new}"]),
    case("status-not-a-run", "status {dir}"),
    # -- the command line itself
    case("unknown-verb", "nosuchverb"),
    case("unknown-option", "status {run} --colour"),
]
# fmt: on


def _verbs() -> set[tuple[str, ...]]:
    """Every leaf command of the typer app, as its words (`hub token create`)."""
    import typer

    from hubtools.cli import app

    def walk(command, prefix):
        children = getattr(command, "commands", None)
        if not children:
            yield prefix
            return
        for name, child in children.items():
            yield from walk(child, (*prefix, name))

    return set(walk(typer.main.get_command(app), ()))


VERBS = _verbs()


def verb_of(c: Case) -> tuple[str, ...] | None:
    matches = [v for v in VERBS if c.args[: len(v)] == v]
    return max(matches, key=len) if matches else None


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    """Real inputs: files, a run with answers, a release folder, a local Hub root."""
    top = tmp_path_factory.mktemp("bad-input")
    paths = {name: top / name for name in ("file", "dir", "empty", "missing", "badyaml")}
    paths["file"].write_text("not a run, not a hub, not a release\n")
    paths["dir"].mkdir()
    paths["empty"] = top / "empty.jsonl"
    paths["empty"].write_text("")
    paths["badyaml"].write_text("a: [\n")
    paths["binary"] = top / "binary.yaml"
    paths["binary"].write_bytes(b"\xff\xfe\x00 not text")
    paths["binlines"] = top / "binary.jsonl"
    paths["binlines"].write_bytes(b"\xff\xfe\x00 not text\n")
    paths["badparquet"] = top / "corrupt.parquet"
    paths["badparquet"].write_text("not parquet\n")
    paths["queries"] = top / "queries.jsonl"
    paths["queries"].write_text(json.dumps({"prompt": "What is 2 + 2?", "reference": "4"}) + "\n")
    paths["badlines"] = top / "bad-lines.jsonl"
    paths["badlines"].write_text('{"prompt": "ok"}\n{not json\n')
    paths["outputs"] = top / "outputs.jsonl"
    paths["outputs"].write_text("".join(json.dumps(o) + "\n" for o in OUTPUTS))
    failing = [{**o, "score": 0.0, "verifier": "given"} for o in OUTPUTS]
    (top / "failing.jsonl").write_text("".join(json.dumps(o) + "\n" for o in failing))
    paths["sources"] = ROOT / "recipes" / "sources.yaml"  # a good config: the run is wrong
    paths["genconfig"] = top / "teachers.yaml"
    paths["genconfig"].write_text(GOOD_CONFIG)
    paths["badendpoint"] = top / "bad-endpoint.yaml"
    paths["badendpoint"].write_text(GOOD_CONFIG.replace("http://127.0.0.1:9", "notaurl"))
    paths["badtype"] = top / "bad-type.yaml"
    paths["badtype"].write_text(GOOD_CONFIG + "threshold: high\n")
    paths.update(run=top / "run", failedrun=top / "failed-run", release=top / "release")
    paths["hub"] = top / "hub"
    setup = [
        ["import", str(paths["outputs"]), "--run", str(paths["run"]), "--teacher", "t1"],
        ["import", str(top / "failing.jsonl"), "--run", str(paths["failedrun"]), "--teacher",
         "t1"],
        ["build", str(paths["run"]), "--teacher", "t1", "--out", str(paths["release"])],
        ["hub", "token", "create", "--root", str(paths["hub"]), "--user", "alice", "--init"],
    ]  # fmt: skip
    for args in setup:
        out = hubtools(*args, "--quiet") if args[0] in ("import", "build") else hubtools(*args)
        assert out.returncode == 0, out.stderr
    return {name: str(path) for name, path in paths.items()} | {"top": str(top)}


def hubtools(*args: str, env: dict[str, str] | None = None, cwd: str | None = None):
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "hubtools", *args], capture_output=True,
                          text=True, timeout=180, env=environ, cwd=cwd)  # fmt: skip


def _fill(text: str, world: dict[str, str], c: Case) -> str:
    return text.format(**world, new=str(Path(world["top"]) / f"new-{c.id}"))


@pytest.fixture(scope="module")
def results(world) -> dict[str, subprocess.CompletedProcess]:
    """Every case, run once, in parallel (each is a fresh Python process)."""

    def run(c: Case) -> subprocess.CompletedProcess:
        args = [_fill(a, world, c) for a in c.args]
        env = {k: _fill(v, world, c) for k, v in c.env.items()}
        return hubtools(*args, env=env, cwd=world["top"])

    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        return dict(zip([c.id for c in CASES], pool.map(run, CASES), strict=True))


@pytest.mark.parametrize("c", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_is_one_documented_line(c: Case, results, world):
    out = results[c.id]
    shown = f"exit {out.returncode}\nstdout: {out.stdout[-2000:]}\nstderr: {out.stderr[-2000:]}"
    assert "Traceback" not in out.stdout + out.stderr, shown
    assert out.returncode == c.code, shown
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    for path in c.absent:
        assert not Path(_fill(path, world, c)).exists(), f"{path} was created\n{shown}"


def test_every_verb_has_bad_input_cases():
    covered = {verb_of(c) for c in CASES}
    missing = sorted(" ".join(v) for v in VERBS - covered)
    assert not missing, f"verbs without a bad-input case in {Path(__file__).name}: {missing}"
    assert len(VERBS) >= 14  # the table is walked from the app, not typed in
