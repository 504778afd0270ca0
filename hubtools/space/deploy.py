"""``hubtools space deploy`` and ``hubtools space run``: the Space app on the Hub or here.

A deployed Space holds everything it imports: ``app.py`` and ``requirements.txt`` from
``spaces/``, the data layer ``hubtools/space/reader.py`` and ``index.py`` as
``space_reader.py`` and ``space_index.py`` (hubtools is not on PyPI), ``space.json``
naming the datasets, and a README whose metadata is ``huggingface_hub.SpaceCardData``.
It is written in one commit, after every dataset was found at its revision; the token is
used, never written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

from hubtools.errors import DataSourceError, PublishError, UsageError

APP_FILES = ("app.py", "requirements.txt")
CONFIG = "space.json"
SHORT = "Parallel distilled datasets side by side"  # the Hub allows 60 characters


@dataclass(slots=True)
class DeployResult:
    repo: str
    url: str
    commit: str
    datasets: list[str]
    files: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"deployed Space {self.repo} (commit {self.commit[:12]}) showing "
            f"{', '.join(self.datasets)}\nopen it at {self.url}"
        )


def spaces_dir() -> Path:
    """``spaces/`` of a checkout, or the copy a wheel installs under ``share/``."""
    here = Path(__file__).resolve()
    installed = Path(sysconfig.get_path("data")) / "share" / "hubtools" / "spaces"
    for candidate in (here.parents[2] / "spaces", installed):
        if (candidate / "app.py").exists():
            return candidate
    raise UsageError("the Space app (spaces/app.py) is missing; reinstall hubtools")


def _specs(datasets: str) -> list[str]:
    from hubtools.space.reader import SpaceDataError, parse_specs

    try:
        return parse_specs(datasets)
    except SpaceDataError as err:
        raise UsageError(f"--datasets: {err}") from None


def _check_endpoint(endpoint: str | None) -> None:
    if endpoint is not None:
        from hubtools.hub.serve import check_url

        check_url(endpoint)
        from hubtools.release.endpoint import prepare

        prepare(endpoint)  # before huggingface_hub is imported: Xet off for a local Hub


def check_datasets(api, specs: list[str]) -> None:  # noqa: ANN001 (an HfApi)
    """Every dataset exists at its revision (and the token may read it), or one error."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    from hubtools.space.reader import parse_spec

    for spec in specs:
        repo, revision = parse_spec(spec)
        try:
            api.dataset_info(repo, revision=revision)
        except RevisionNotFoundError:
            raise DataSourceError(f"dataset {repo} has no revision {revision!r}") from None
        except RepositoryNotFoundError:
            raise DataSourceError(
                f"dataset {repo} not found at {api.endpoint} (or private: give a token)"
            ) from None
        except Exception as err:  # noqa: BLE001 (unreachable Hub, HTTP errors): one line
            reason = " ".join(str(err).split())[:200]
            raise DataSourceError(f"dataset {spec}: {type(err).__name__}: {reason}") from None


def _card(repo: str, specs: list[str], sdk_version: str | None) -> str:
    from huggingface_hub import RepoCard, SpaceCardData

    from hubtools.space.reader import parse_spec

    repos = sorted({parse_spec(s)[0] for s in specs})
    data = SpaceCardData(
        title=repo.split("/")[1],
        sdk="gradio",
        sdk_version=sdk_version,
        app_file="app.py",
        datasets=repos,
        short_description=SHORT,
        tags=["hubtools", "distillation", "reasoning"],
        emoji="🔍",
        colorFrom="blue",
        colorTo="gray",
        pinned=False,
    )
    shown = "\n".join(f"- [`{s}`](https://huggingface.co/datasets/{parse_spec(s)[0]})"
                      for s in specs)  # fmt: skip
    body = (
        f"# {repo.split('/')[1]}\n\nThe same queries answered by each teacher, side by side: "
        "the thinking (collapsed), the answer, its verify score and perplexity; the "
        "releases' funnel and verification tables; per-teacher length, score and "
        f"perplexity distributions. Made with hubtools (`hubtools space deploy`).\n\n"
        f"Datasets (listed in `{CONFIG}`):\n\n{shown}\n\nPrivate datasets: add a `HF_TOKEN` "
        "secret that can read them.\n"
    )
    return RepoCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + body).content


def deploy(
    repo: str,
    datasets: str,
    *,
    endpoint: str | None = None,
    private: bool = False,
    token: str | None = None,
) -> DeployResult:
    """Create or update the Space ``repo`` showing ``datasets``, in one commit."""
    from hubtools.release.publish import check_repo_id

    check_repo_id(repo)
    specs = _specs(datasets)
    _check_endpoint(endpoint)
    folder = spaces_dir()
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=endpoint, token=token or os.environ.get("HF_TOKEN") or None)
    check_datasets(api, specs)
    from importlib.metadata import PackageNotFoundError, version

    try:  # the Gradio the app was tested with here (read without importing it)
        sdk_version = version("gradio")
    except PackageNotFoundError:
        sdk_version = None
    config = {"datasets": specs}
    if endpoint and not _is_hf(endpoint):
        config["endpoint"] = endpoint.rstrip("/")
    here = Path(__file__).parent
    files = {
        "README.md": _card(repo, specs, sdk_version).encode(),
        "app.py": (folder / "app.py").read_bytes(),
        "requirements.txt": (folder / "requirements.txt").read_bytes(),
        "space_reader.py": (here / "reader.py").read_bytes(),
        "space_index.py": (here / "index.py").read_bytes(),
        CONFIG: (json.dumps(config, indent=2) + "\n").encode(),
    }
    operations = [CommitOperationAdd(path, content) for path, content in files.items()]
    try:
        url = api.create_repo(repo, repo_type="space", space_sdk="gradio", private=private,
                              exist_ok=True)  # fmt: skip
        commit = api.create_commit(
            repo, operations, commit_message=f"hubtools space deploy: {', '.join(specs)}",
            repo_type="space",
        )  # fmt: skip
    except Exception as err:  # noqa: BLE001 (HTTP and connection errors): one line
        from hubtools.release.remote import hub_error

        found = hub_error(err, f"deploy to Space {repo}")
        if found is err:
            raise PublishError(f"deploy to Space {repo}: {type(err).__name__}: {err}") from None
        raise found from None
    return DeployResult(repo=repo, url=str(url), commit=commit.oid, datasets=specs,
                        files=sorted(files))  # fmt: skip


def _is_hf(endpoint: str) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(endpoint).hostname or ""
    return host in ("huggingface.co", "hf.co") or host.endswith((".huggingface.co", ".hf.co"))


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent missing, or a module blocked in sys.modules
        return False


def run(
    datasets: str,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    endpoint: str | None = None,
    token: str | None = None,
) -> None:
    """Serve the Space app here on ``host:port`` until interrupted."""
    import runpy

    specs = _specs(datasets)
    if not 0 < port < 65536:
        raise UsageError(f"--port must be 1..65535, got {port}")
    _check_endpoint(endpoint)
    if not _importable("gradio"):  # the `space` extra: a plain install has no Gradio
        raise UsageError("serving the Space needs gradio: pip install 'hubtools[space]'")
    app = spaces_dir() / "app.py"
    os.environ.update(
        HUBTOOLS_SPACE_DATASETS=",".join(specs),
        GRADIO_SERVER_NAME=host,
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
    )
    if token:
        os.environ["HF_TOKEN"] = token
    from hubtools.space.reader import SpaceData, SpaceDataError

    try:  # the datasets are checked (and the index built) before the server starts
        module = runpy.run_path(str(app), run_name="hubtools_space_app")
        data = SpaceData(specs, endpoint=endpoint, token=token)
    except SpaceDataError as err:
        raise DataSourceError(str(err)) from None
    print(f"serving {', '.join(specs)} on http://{host}:{port}", flush=True)
    module["serve"](data, host=host, port=port)
