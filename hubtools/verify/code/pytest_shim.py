"""The part of pytest's API that test modules use, for the sandbox (installed there as `pytest`).

The harness runs pytest-style tests without pytest: the sandbox's Python need not
have it, and pytest's own start-up would cost more than most tests. Provided:
``raises``, ``approx``, ``mark.parametrize`` (other marks are recorded and
ignored), ``param``, ``fixture`` (function scope, plain or generator), ``fail``,
``skip``, ``importorskip`` and the ``capsys`` and ``tmp_path`` fixtures.
Kept compatible with Python 3.8; not imported by hubtools.
"""

import io
import math
import re
import sys
import tempfile
from pathlib import Path


class UsageError(Exception):
    pass


class Failed(AssertionError):
    pass


class Skipped(Exception):
    """A skipped test did not pass: the harness reports it as an error."""


def fail(reason="", pytrace=True):
    raise Failed(reason)


def skip(reason="", allow_module_level=False):
    raise Skipped(reason)


def importorskip(modname, minversion=None, reason=None):
    try:
        return __import__(modname, fromlist=["_"])
    except ImportError:
        raise Skipped(reason or f"could not import {modname!r}") from None


class ExceptionInfo:
    def __init__(self):
        self.type = self.value = self.tb = None

    def match(self, pattern):
        assert re.search(pattern, str(self.value)), f"{pattern!r} does not match {self.value}"
        return True


class _Raises:
    def __init__(self, expected, match):
        self.expected, self.pattern, self.info = expected, match, ExceptionInfo()

    def __enter__(self):
        return self.info

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            raise Failed(f"DID NOT RAISE {self.expected!r}")
        if not issubclass(exc_type, self.expected):
            return False
        self.info.type, self.info.value, self.info.tb = exc_type, exc, tb
        if self.pattern is not None:
            self.info.match(self.pattern)
        return True


def raises(expected_exception, *args, match=None, **kwargs):
    context = _Raises(expected_exception, match)
    if not args:
        return context
    with context as info:
        args[0](*args[1:], **kwargs)
    return info


class approx:
    """Equal within max(rel * |expected|, abs); recursive over sequences and dicts."""

    __hash__ = None

    def __init__(self, expected, rel=None, abs=None, nan_ok=False):
        self.expected, self.nan_ok = expected, nan_ok
        self.rel = 1e-6 if rel is None else rel
        self.abs = 1e-12 if abs is None else abs

    def __repr__(self):
        return f"approx({self.expected!r})"

    def __eq__(self, actual):
        return self._close(actual, self.expected)

    def __ne__(self, actual):
        return not self == actual

    def _close(self, actual, expected):
        if isinstance(expected, dict):
            return isinstance(actual, dict) and actual.keys() == expected.keys() and all(
                self._close(actual[k], expected[k]) for k in expected)  # fmt: skip
        if isinstance(expected, (list, tuple)):
            if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
                return False
            pairs = zip(actual, expected)  # noqa: B905 (zip(strict=) is Python 3.10+)
            return all(self._close(a, e) for a, e in pairs)
        if isinstance(expected, bool) or not isinstance(expected, (int, float, complex)):
            return actual == expected
        try:
            if expected == actual:
                return True
            if isinstance(expected, float) and math.isnan(expected):
                return self.nan_ok and isinstance(actual, float) and math.isnan(actual)
            if isinstance(expected, float) and math.isinf(expected):
                return False
            return abs(actual - expected) <= max(self.rel * abs(expected), self.abs)
        except TypeError:
            return False


class Mark:
    def __init__(self, name, args, kwargs):
        self.name, self.args, self.kwargs = name, args, kwargs


class _MarkDecorator:
    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs and self.name != "parametrize":
            return self._apply(args[0], Mark(self.name, (), {}))
        return lambda fn: self._apply(fn, Mark(self.name, args, kwargs))

    @staticmethod
    def _apply(fn, mark):
        fn.pytestmark = list(getattr(fn, "pytestmark", [])) + [mark]
        return fn


class _MarkGenerator:
    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _MarkDecorator(name)


mark = _MarkGenerator()


class _Param:
    def __init__(self, values, marks, id):
        self.values, self.marks, self.id = values, marks, id


def param(*values, marks=(), id=None):
    return _Param(values, marks, id)


def fixture(fn=None, **options):
    def wrap(f):
        f._hubtools_fixture = True
        return f

    return wrap(fn) if callable(fn) else wrap


class _CaptureResult(tuple):
    @property
    def out(self):
        return self[0]

    @property
    def err(self):
        return self[1]


class CaptureFixture:
    def __init__(self):
        self._saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = io.StringIO(), io.StringIO()

    def readouterr(self):
        out, err = sys.stdout.getvalue(), sys.stderr.getvalue()
        sys.stdout.seek(0), sys.stdout.truncate(), sys.stderr.seek(0), sys.stderr.truncate()
        return _CaptureResult((out, err))

    def _hubtools_close(self):
        sys.stdout, sys.stderr = self._saved


BUILTIN_FIXTURES = {
    "capsys": CaptureFixture,
    "tmp_path": lambda: Path(tempfile.mkdtemp()),
}
