"""Reading Hub datasets for the query stage: resolve a revision to its commit, stream it.

Sources and benchmarks are pinned to the commit their revision resolved to, so a run
records exactly what it read, and every shard of a run reads the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hubtools.errors import DataSourceError


def resolve_commit(repo: str, revision: str | None, what: str) -> str:
    """The commit sha ``revision`` (default: main) of dataset ``repo`` points at now."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return HfApi().dataset_info(repo, revision=revision).sha
    except GatedRepoError:
        raise DataSourceError(
            f"{what}: {repo} is gated; accept its terms on the Hub and log in (hf auth login)"
        ) from None
    except RevisionNotFoundError:
        raise DataSourceError(f"{what}: {repo} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise DataSourceError(
            f"{what}: dataset {repo} not found (or private: log in with a token that can read it)"
        ) from None
    except (HfHubHTTPError, OSError) as err:
        raise DataSourceError(f"{what}: cannot reach {repo} ({_one_line(err)})") from None


def open_dataset(
    repo: str,
    *,
    commit: str,
    what: str,
    config: str | None = None,
    split: str = "train",
    data_files: Sequence[str] | None = None,
    streaming: bool = True,
) -> Any:
    """``load_dataset`` of ``repo`` at ``commit``; errors become one ``DataSourceError`` line.

    With ``data_files`` (patterns inside the repo) the files are read by the JSON or
    Parquet builder directly: that is how repos that still ship a loading script, which
    ``datasets`` no longer runs (LiveCodeBench), are read.
    """
    from datasets import load_dataset

    try:
        if data_files:
            urls = [f"hf://datasets/{repo}@{commit}/{pattern}" for pattern in data_files]
            builder = "parquet" if all(p.endswith(".parquet") for p in data_files) else "json"
            return load_dataset(builder, data_files=urls, split="train", streaming=streaming)
        return load_dataset(repo, config, split=split, revision=commit, streaming=streaming)
    except Exception as err:  # datasets raises many types; all mean "cannot read it"
        raise DataSourceError(f"{what}: cannot load {repo} ({_one_line(err)})") from None


def open_spec(spec: Any, *, commit: str, what: str) -> Any:
    """``open_dataset`` for a source or benchmark spec (its repo, config, split, data_files)."""
    return open_dataset(
        spec.repo, commit=commit, what=what, config=spec.config, split=spec.split,
        data_files=spec.data_files,
    )  # fmt: skip


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."
