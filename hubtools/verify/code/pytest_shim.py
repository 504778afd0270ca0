"""The part of pytest's API that test modules use, for the sandbox (installed there as `pytest`).

The harness runs pytest-style tests without pytest: the sandbox's Python need not
have it, and pytest's own start-up would cost more than most tests. Provided:
``raises``, ``warns``, ``approx``, ``mark.parametrize`` (other marks are recorded
and ignored), ``param``, ``fixture`` (function scope, plain or generator),
``fail``, ``skip``, ``importorskip`` and the ``capsys``, ``tmp_path`` and
``monkeypatch`` fixtures.
Kept compatible with Python 3.8; not imported by hubtools.
"""

import importlib
import io
import math
import os
import re
import sys
import tempfile
import warnings as _warnings
from contextlib import contextmanager
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


@contextmanager
def warns(expected_warning=Warning, *args, match=None, **kwargs):
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        yield caught
    hits = [w for w in caught if issubclass(w.category, expected_warning)]
    if match is not None:
        hits = [w for w in hits if re.search(match, str(w.message))]
    if not hits:
        raise Failed(f"DID NOT WARN {expected_warning!r}")


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


_NOTSET = object()


class MonkeyPatch:
    """setattr/delattr/setitem/delitem/setenv/delenv/syspath_prepend, undone after the test."""

    def __init__(self):
        self._undo = []

    def setattr(self, target, name, value=_NOTSET, raising=True):
        if value is _NOTSET:  # setattr("pkg.module.attr", value)
            module, _, attr = target.rpartition(".")
            target, name, value = importlib.import_module(module), attr, name
        old = getattr(target, name, _NOTSET)
        if old is _NOTSET and raising:
            raise AttributeError(f"{target!r} has no attribute {name!r}")
        self._undo.append(lambda: delattr(target, name) if old is _NOTSET
                          else setattr(target, name, old))  # fmt: skip
        setattr(target, name, value)

    def delattr(self, target, name, raising=True):
        if not hasattr(target, name):
            if raising:
                raise AttributeError(name)
            return
        old = getattr(target, name)
        self._undo.append(lambda: setattr(target, name, old))
        delattr(target, name)

    def setitem(self, mapping, key, value):
        old = mapping.get(key, _NOTSET)
        self._undo.append(lambda: mapping.pop(key, None) if old is _NOTSET
                          else mapping.__setitem__(key, old))  # fmt: skip
        mapping[key] = value

    def delitem(self, mapping, key, raising=True):
        if key not in mapping:
            if raising:
                raise KeyError(key)
            return
        old = mapping[key]
        self._undo.append(lambda: mapping.__setitem__(key, old))
        del mapping[key]

    def setenv(self, name, value, prepend=None):
        value = str(value)
        if prepend and name in os.environ:
            value = value + prepend + os.environ[name]
        self.setitem(os.environ, name, value)

    def delenv(self, name, raising=True):
        self.delitem(os.environ, name, raising)

    def syspath_prepend(self, path):
        self._undo.append(lambda: sys.path.remove(str(path)))
        sys.path.insert(0, str(path))

    def chdir(self, path):
        old = os.getcwd()
        self._undo.append(lambda: os.chdir(old))
        os.chdir(path)

    def _hubtools_close(self):
        for undo in reversed(self._undo):
            undo()
        self._undo = []


BUILTIN_FIXTURES = {
    "monkeypatch": MonkeyPatch,
    "capsys": CaptureFixture,
    "tmp_path": lambda: Path(tempfile.mkdtemp()),
}
