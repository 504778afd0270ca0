"""``--push-to-hub ORG/MODEL``: an eval's results into the model card's ``model-index``.

One ``EvalResult`` per benchmark, through huggingface_hub's ``metadata_update``, so the
card is what the Hub, leaderboards and ``ModelCard.load`` expect: the dataset's Hub id,
config, split and the commit it was read at; the metric ``avg@k`` (pass@1 averaged over
k samples, in percent, as the paper reports it) with k and the sampling settings as its
arguments; ``source`` naming hubtools. Results of other benchmarks and other tools stay:
``metadata_update`` adds a result unless one with the same task, dataset and metric
exists, which this eval then updates (a re-run of the same protocol replaces its number).

The card is read and written against the head commit seen first (``parent_commit``):
two evals pushing at once cannot overwrite each other's results; the loser reads the
new card and tries again. The repo must exist (an eval never creates model repos).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hubtools.errors import PublishError, UsageError

SOURCE_NAME = "hubtools eval"
SOURCE_URL = "https://pypi.org/project/hubtools/"  # the project has no other home yet
TASK = ("text-generation", "Text Generation")
CONFIGS = {"livecodebench": "release_v5", "gpqa_diamond": "gpqa_diamond"}
CONFLICT_TRIES = 5


def check_repo(repo_id: str) -> str:
    """``ORG/MODEL`` as the Hub accepts it (one line otherwise)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise UsageError(f"--push-to-hub must look like ORG/MODEL, got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UsageError(f"--push-to-hub {repo_id!r} is not a valid repo id: {err}") from None
    return repo_id


def check_access(repo_id: str, token: str | None = None) -> None:
    """Before an eval: the repo id is valid, the model repo exists, the token may write to it.

    For the Hub this process's huggingface_hub talks to (``HF_ENDPOINT``); the role of a
    fine-grained token is the Hub's to check at push time.
    """
    check_repo(repo_id)
    from huggingface_hub import HfApi

    from hubtools.release.remote import retry

    api = HfApi(token=token)
    where = f"--push-to-hub {repo_id}"
    try:
        me = retry(lambda: api.whoami(), where)
    except PublishError as err:
        raise PublishError(f"{err} (a write token is needed to push results)") from None
    except Exception as err:  # no token at all (LocalTokenNotFoundError and kin)
        raise PublishError(f"{where}: no Hub token ({err}); log in or set HF_TOKEN") from None
    retry(lambda: api.repo_info(repo_id, repo_type="model"), where)
    owner = repo_id.split("/")[0]
    names = {me.get("name")} | {o.get("name") for o in me.get("orgs") or []}
    if owner not in names:
        raise PublishError(f"{where}: the token is {me.get('name')}'s, who cannot write to {owner}")
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise PublishError(f"{where}: the token is read-only; a write token is needed")


def eval_results(results: dict[str, Any]) -> list[Any]:
    """One ``EvalResult`` per benchmark of a results.json."""
    from huggingface_hub import EvalResult

    from hubtools.eval.compare import display_name

    out = []
    for name, b in sorted(results.get("benchmarks", {}).items()):
        k = int(b["samples_per_problem"])
        settings = b.get("settings") or {}
        args = {"k": k, "problems": b.get("problems"), "verifier": b.get("verifier")}
        args |= {key: settings.get(key) for key in ("temperature", "top_p", "max_new_tokens")}
        out.append(
            EvalResult(
                task_type=TASK[0], task_name=TASK[1],
                dataset_type=b["dataset"], dataset_name=display_name(name),
                dataset_config=CONFIGS.get(name), dataset_split=b.get("split"),
                dataset_revision=b.get("revision"),
                metric_type=f"avg@{k}", metric_name=f"avg@{k} (pass@1 over {k} samples, %)",
                metric_value=round(100 * float(b["avg_at_k"]), 2),
                metric_args={k2: v for k2, v in args.items() if v is not None},
                source_name=SOURCE_NAME, source_url=SOURCE_URL,
            )
        )  # fmt: skip
    return out


def push_results(
    results: dict[str, Any] | str | Path,
    repo_id: str,
    token: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Merge ``results`` (results.json's dict, or its path) into ``repo_id``'s model card.

    ``endpoint`` (default ``HF_ENDPOINT``, else huggingface.co) picks the Hub; when this
    process's huggingface_hub was imported for another one, a child process pushes.
    Returns the commit URL.
    """
    if not isinstance(results, dict):
        results = json.loads(Path(results).read_text(encoding="utf-8"))
    check_repo(repo_id)
    if not results.get("benchmarks"):
        raise UsageError("the results hold no benchmark to push")
    partial = [n for n, b in results["benchmarks"].items() if b.get("complete") is False]
    if partial:
        raise UsageError(
            f"{', '.join(partial)} not finished (samples missing or unverified): run the same "
            "`hubtools eval` again, then push"
        )
    if endpoint is not None:
        from hubtools.hub.serve import check_url

        check_url(endpoint)
    from hubtools.release.endpoint import prepare, wanted_env

    if not prepare(endpoint):
        return _in_child(results, repo_id, wanted_env(endpoint), token)
    return _push_here(results, repo_id, token)


def _push_here(results: dict[str, Any], repo_id: str, token: str | None) -> str:
    from huggingface_hub import HfApi, ModelCardData, metadata_update
    from huggingface_hub.errors import HfHubHTTPError

    from hubtools.release.remote import hub_error, retry

    api = HfApi(token=token)
    where = f"pushing results to {repo_id}"
    name = results.get("model") or repo_id.split("/")[-1]
    index = ModelCardData(model_name=name, eval_results=eval_results(results)).to_dict()
    message = f"hubtools eval: {', '.join(sorted(results['benchmarks']))} of {name}"
    for attempt in range(CONFLICT_TRIES):
        head = retry(lambda: api.repo_info(repo_id, repo_type="model").sha, where)
        try:
            return str(
                metadata_update(
                    repo_id, {"model-index": index["model-index"]}, overwrite=True, token=token,
                    commit_message=message, parent_commit=head,
                )
            )  # fmt: skip
        except HfHubHTTPError as err:
            status = err.response.status_code if err.response is not None else None
            if status in (409, 412) and attempt < CONFLICT_TRIES - 1:
                continue  # another commit landed since `head`: read the new card, merge again
            raise hub_error(err, where) from None
        except ValueError as err:  # the Hub's validate-yaml refused the card
            raise PublishError(f"{where}: the Hub refused the card: {err}") from None
    raise AssertionError("unreachable")


def _in_child(results: dict[str, Any], repo_id: str, env: dict[str, str], token: str | None):
    """Push from a fresh process whose huggingface_hub is set up for the wanted Hub."""
    with tempfile.TemporaryDirectory(prefix="hubtools-push-") as tmp:
        path = Path(tmp) / "results.json"
        path.write_text(json.dumps(results), encoding="utf-8")
        child_env = {**os.environ, **env}
        if token:
            child_env["HF_TOKEN"] = token  # the environment, never a command line
        proc = subprocess.run(
            [sys.executable, "-m", "hubtools.eval.push", str(path), repo_id],
            env=child_env, capture_output=True, text=True,
        )  # fmt: skip
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        reason = lines[-1].removeprefix("error: ") if lines else proc.stderr.strip()[-300:]
        raise PublishError(reason)
    return proc.stdout.strip()


def _main(argv: list[str]) -> int:
    from hubtools.errors import HubtoolsError

    try:
        print(push_results(Path(argv[0]), argv[1]))
    except HubtoolsError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
