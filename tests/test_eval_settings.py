"""`hubtools eval`'s settings: the paper's defaults, and which source wins."""

from __future__ import annotations

import pytest

from hubtools.errors import UsageError
from hubtools.eval.results import ks_for, pass_at_k
from hubtools.eval.settings import MATH_SUFFIX, PAPER_SYSTEM_PROMPT, public_url, resolve_settings

ALL = "aime_2024,aime_2025,math500,livecodebench,gpqa_diamond,ifeval"


def test_defaults_are_the_papers():
    s = resolve_settings(endpoint="http://h:1", model="m", benchmarks=ALL, out="o")
    by = {b.name: b for b in s.benchmarks}
    assert {n: b.samples for n, b in by.items()} == {
        "aime_2024": 64, "aime_2025": 64, "math500": 4, "livecodebench": 16,
        "gpqa_diamond": 8, "ifeval": 1,
    }  # fmt: skip
    for b in s.benchmarks:
        assert (b.temperature, b.top_p, b.max_new_tokens) == (0.6, 0.95, 49_152)
        assert b.system_prompt == PAPER_SYSTEM_PROMPT
    assert by["aime_2025"].suffix == by["math500"].suffix == MATH_SUFFIX
    assert by["livecodebench"].suffix is None and by["ifeval"].suffix is None


def test_command_line_over_config_over_defaults(tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text(
        "endpoint: http://h:1\nmodel: m\nout: o\ntemperature: 0.7\nsamples: 3\n"
        "benchmarks:\n  aime_2024: {samples: 128, suffix: null}\n  math500: {top_p: 0.5}\n"
    )
    s = resolve_settings(config=config, temperature=0.9, samples=None)
    aime, math500 = s.benchmarks
    assert (aime.samples, aime.temperature, aime.suffix) == (128, 0.9, None)
    assert (math500.samples, math500.top_p, math500.suffix) == (3, 0.5, MATH_SUFFIX)
    s = resolve_settings(config=config, samples="math500=8")
    assert [b.samples for b in s.benchmarks] == [128, 8]
    s = resolve_settings(config=config, samples="256", top_p=0.9, benchmarks="math500")
    [math500] = s.benchmarks  # the file's own math500 settings, the command line's over them
    assert (math500.samples, math500.top_p, math500.temperature) == (256, 0.9, 0.7)


@pytest.mark.parametrize(
    "given, message",
    [
        ({"samples": "aime_2024=0"}, "samples must be an integer >= 1"),
        ({"samples": "aime_2024:4"}, "expected NAME=N"),
        ({"benchmarks": "aime_2024,aime_2024"}, "named twice"),
        ({"endpoint": "ftp://h"}, "http"),
        ({"limit": 0}, "limit must be an integer >= 1"),
    ],
)
def test_mistakes_are_one_line(given, message):
    base = {"endpoint": "http://h:1", "model": "m", "benchmarks": "aime_2024", "out": "o"}
    with pytest.raises(UsageError, match=message):
        resolve_settings(**{**base, **given})


def test_endpoint_credentials_never_recorded():
    assert (
        public_url("https://user:secret@h.example:8443/v1?key=abc") == "https://h.example:8443/v1"
    )
    s = resolve_settings(endpoint="http://u:p@h:1/", model="m", benchmarks="ifeval", out="o")
    assert "p@" not in str(s.to_dict())


def test_chen_pass_at_k_by_hand():
    assert pass_at_k(4, 1, 1) == pytest.approx(1 / 4)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 2, 3) == 1.0
    assert ks_for(64) == [1, 2, 4, 8, 16, 32, 64] and ks_for(6) == [1, 2, 4, 6]
