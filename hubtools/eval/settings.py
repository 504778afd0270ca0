"""What an eval asks: the benchmarks, samples per problem and sampling, with the paper's defaults.

Defaults (arXiv 2505.14464, "Evaluation"; specs/paper.md): temperature 0.6, top_p 0.95,
at most 49,152 new tokens; 64 samples per AIME problem, 16 per LiveCodeBench problem, 4
per MATH500 problem; the paper's system prompt; the math suffix on AIME and MATH500.
The paper does not evaluate GPQA-Diamond or IFEval: hubtools samples them 8 and 1 times
and asks for GPQA's letter in \\boxed{}.
Command-line values override the config file, which overrides the defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hubtools.checks import is_int, is_number
from hubtools.errors import UsageError

PAPER_SYSTEM_PROMPT = (
    "You are a helpful assistant. To answer the user's question, you first think about the "
    "reasoning process and then provide the user with the answer. The reasoning process and "
    "answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, "
    "i.e., <think> reasoning process here </think> <answer> answer here </answer>."
)
MATH_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."
BENCHMARKS = ("aime_2024", "aime_2025", "math500", "livecodebench", "gpqa_diamond", "ifeval")
DEFAULT_SAMPLES = {
    "aime_2024": 64, "aime_2025": 64, "math500": 4, "livecodebench": 16,
    "gpqa_diamond": 8, "ifeval": 1,
}  # fmt: skip
GPQA_SUFFIX = "Put the letter of the correct option (A, B, C or D) within \\boxed{}."
DEFAULT_SUFFIX = {
    "aime_2024": MATH_SUFFIX, "aime_2025": MATH_SUFFIX, "math500": MATH_SUFFIX,
    "gpqa_diamond": GPQA_SUFFIX,
}  # fmt: skip
TEMPERATURE, TOP_P, MAX_NEW_TOKENS = 0.6, 0.95, 49_152
_PER_BENCHMARK = ("samples", "temperature", "top_p", "max_new_tokens", "system_prompt", "suffix")
_KEYS = {
    "endpoint", "model", "benchmarks", "out", "samples", "temperature", "top_p",
    "max_new_tokens", "system_prompt", "limit", "api_key_env", "max_concurrency",
    "request_timeout_s", "down_after_s",
}  # fmt: skip


@dataclass(slots=True)
class BenchmarkSettings:
    name: str
    samples: int
    temperature: float = TEMPERATURE
    top_p: float = TOP_P
    max_new_tokens: int = MAX_NEW_TOKENS
    system_prompt: str | None = PAPER_SYSTEM_PROMPT
    suffix: str | None = None

    def sampling(self) -> dict[str, Any]:
        """The settings results.json records (and the run freezes), samples aside."""
        return {k: getattr(self, k) for k in _PER_BENCHMARK if k != "samples"}


@dataclass(slots=True)
class EvalSettings:
    endpoint: str
    model: str
    out: Path
    benchmarks: list[BenchmarkSettings]
    limit: int | None = None
    api_key_env: str | None = None
    max_concurrency: int = 256
    request_timeout_s: float = 3600.0  # longest wait for one whole answer
    down_after_s: float = 600.0  # an endpoint failing this long stops the eval (exit 3)

    def public_endpoint(self) -> str:
        return public_url(self.endpoint)

    def to_dict(self) -> dict[str, Any]:
        """The global settings for results.json: no key, no credentials in the URL."""
        data = asdict(self)
        data.pop("benchmarks")
        data["endpoint"], data["out"] = self.public_endpoint(), str(self.out)
        return data


def public_url(url: str) -> str:
    """``url`` without user:password@ and query string (where keys hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def resolve_settings(*, config: Path | None = None, **given: Any) -> EvalSettings:
    """The command line over the config file over the defaults; every mistake one line."""
    data: dict[str, Any] = _read_config(config) if config is not None else {}
    where = str(config) if config is not None else "the command line"
    from_file = dict(data)
    cli = {key: value for key, value in given.items() if value is not None}
    data.update(cli)
    for key in ("endpoint", "model", "benchmarks", "out"):
        if data.get(key) in (None, ""):
            raise UsageError(f"give --{key.replace('_', '-')} (or '{key}:' in --config)")
    endpoint = data["endpoint"]
    url = urlsplit(str(endpoint))
    if url.scheme not in ("http", "https") or not url.hostname:
        raise UsageError(f"--endpoint must be an http(s) URL, got {public_url(str(endpoint))!r}")
    if not isinstance(data["model"], str):
        raise UsageError(f"{where}: model must be the served model's name")
    # A benchmark's own settings in the file apply when the command line selects it too.
    own_in_file = (
        _benchmark_overrides(from_file["benchmarks"], where)
        if isinstance(from_file.get("benchmarks"), dict) else {}
    )  # fmt: skip
    selected = _benchmark_overrides(data["benchmarks"], where)
    overrides = {name: own or own_in_file.get(name, {}) for name, own in selected.items()}
    names = list(overrides)
    file_samples = _parse_samples(from_file.get("samples"), list(BENCHMARKS), where)
    cli_samples = _parse_samples(cli.get("samples"), names, "the command line")
    benchmarks = []
    for name, own in overrides.items():
        # defaults < the file's global keys < the file's benchmark keys < the command line
        values = {k: from_file[k] for k in _PER_BENCHMARK if k in from_file and k != "samples"}
        values.setdefault("suffix", DEFAULT_SUFFIX.get(name))
        values.update({k: v for k, v in own.items() if k != "samples"})
        values.update({k: cli[k] for k in _PER_BENCHMARK if k in cli and k != "samples"})
        values["samples"] = cli_samples.get(
            name, own.get("samples", file_samples.get(name, DEFAULT_SAMPLES[name]))
        )
        benchmarks.append(_check_benchmark(BenchmarkSettings(name, **values), where))
    settings = EvalSettings(
        endpoint=str(endpoint), model=data["model"], out=Path(data["out"]), benchmarks=benchmarks,
        **{k: data[k] for k in ("limit", "api_key_env", "max_concurrency", "request_timeout_s",
                                "down_after_s") if k in data},
    )  # fmt: skip
    for key, low in (("limit", 1), ("max_concurrency", 1)):
        value = getattr(settings, key)
        if value is not None and not (is_int(value) and value >= low):
            raise UsageError(f"{where}: {key} must be an integer >= {low}, got {value!r}")
    for key in ("request_timeout_s", "down_after_s"):
        value = getattr(settings, key)
        if not (is_number(value) and value > 0):
            raise UsageError(f"{where}: {key} must be a number of seconds > 0, got {value!r}")
    if settings.api_key_env is not None and not isinstance(settings.api_key_env, str):
        raise UsageError(f"{where}: api_key_env must be the name of an environment variable")
    return settings


def _read_config(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not UTF-8 text"
        raise UsageError(f"cannot read the config file {path} ({reason})") from None
    except yaml.YAMLError as err:
        raise UsageError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of settings (endpoint:, model:, ...)")
    if unknown := sorted(map(str, set(data) - _KEYS)):
        raise UsageError(f"{path}: unknown keys {', '.join(unknown)}; known: {sorted(_KEYS)}")
    return data


def _benchmark_overrides(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """``a,b`` or a list of names, or (config) a mapping NAME -> its own settings."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        value = {name: {} for name in value} if len(set(map(str, value))) == len(value) else None
        if value is None:
            raise UsageError(f"{where}: a benchmark is named twice")
    if not isinstance(value, dict) or not value:
        raise UsageError(f"{where}: benchmarks must name some of {', '.join(BENCHMARKS)}")
    for name, own in value.items():
        if name not in BENCHMARKS:
            raise UsageError(f"unknown benchmark {name!r}: use some of {', '.join(BENCHMARKS)}")
        if own is None:
            value[name] = {}
        elif not isinstance(own, dict) or (bad := set(own) - set(_PER_BENCHMARK)):
            raise UsageError(
                f"{where}: benchmarks.{name} takes only {', '.join(_PER_BENCHMARK)}"
                + (f" (not {', '.join(sorted(map(str, bad)))})" if isinstance(own, dict) else "")
            )
    return value


def _parse_samples(value: Any, names: list[str], where: str) -> dict[str, int]:
    """``N`` for every benchmark, or ``name=N,...`` (a mapping in the config file)."""
    if value is None:
        return {}
    if is_int(value):
        return dict.fromkeys(names, value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return dict.fromkeys(names, int(text))
        value = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            name, sep, count = item.partition("=")
            if not sep or not count.strip().isdigit():
                raise UsageError(f"--samples: expected NAME=N, got {item!r} (e.g. aime_2024=64)")
            value[name.strip()] = int(count)
    if not isinstance(value, dict):
        raise UsageError(f"{where}: samples must be a number or a mapping benchmark -> number")
    for name in value:
        if name not in names:
            raise UsageError(
                f"{where}: samples names {name!r}, not one of the benchmarks evaluated "
                f"({', '.join(names)})"
            )
    return value


def _check_benchmark(b: BenchmarkSettings, where: str) -> BenchmarkSettings:
    at = f"{where}: {b.name}"
    if not (is_int(b.samples) and b.samples >= 1):
        raise UsageError(f"{at}: samples must be an integer >= 1, got {b.samples!r}")
    if not (is_number(b.temperature) and b.temperature >= 0):
        raise UsageError(f"{at}: temperature must be a number >= 0")
    if not (is_number(b.top_p) and 0 < b.top_p <= 1):
        raise UsageError(f"{at}: top_p must be a number in (0, 1]")
    if not (is_int(b.max_new_tokens) and b.max_new_tokens >= 1):
        raise UsageError(f"{at}: max_new_tokens must be an integer >= 1")
    for key in ("system_prompt", "suffix"):
        if getattr(b, key) is not None and not isinstance(getattr(b, key), str):
            raise UsageError(f"{at}: {key} must be text")
    return b
