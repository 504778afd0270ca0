"""Inside the sandbox: import the program as module `solution`, run each case, report each.

Run by the sandbox's Python as ``python -I -B harness.py SPEC PROGRAM``; not imported
by hubtools. Cases run in one process (a Python start per case would cost more than
most cases), each under its own alarm. The harness reads a one-time nonce from
stdin before the program runs and signs every result line with it; a program
that exits early (``sys.exit(0)``, ``os._exit(0)``) or prints look-alike lines
therefore reports nothing, and unreported cases fail. The program's own stdout
goes to /dev/null. The reporter holds its own reference to os.write, so a
program that patches modules changes nothing; a program
written to attack the harness from inside its interpreter (walking the heap,
returning objects that equal everything) is beyond what any in-process test
runner can stop. Kept compatible with Python 3.8 so any sandbox Python runs it,
and free of imports that cost start-up time (json and traceback would double it):
the spec is a Python literal written by hubtools, results are lines of
``NONCE INDEX STATUS SECONDS ascii(MESSAGE)``.
"""

import os
import signal
import sys
import time
import types


class CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException so that `except Exception` in the program misses it."""


def _alarm(signum, frame):
    raise CaseTimeout()


def _message(exc):
    name = type(exc).__name__
    if isinstance(exc, SyntaxError):
        return f"{name}: {exc.msg} (line {exc.lineno})"
    text = str(exc)
    return f"{name}: {text}"[-500:] if text else name


class Reporter:
    def __init__(self, nonce, fd):
        self.nonce, self.fd = nonce, fd
        self.write, self.ascii = os.write, ascii  # taken before the program can patch them

    def __call__(self, index, status, message="", seconds=0.0):
        line = f"{self.nonce} {index} {status} {seconds:.4f} {self.ascii(message)}\n"
        try:
            self.write(self.fd, line.encode())
        except OSError:
            pass  # the program closed our descriptor: its cases stay unreported, i.e. failed


def attempt(timeout, run):
    """(status, message, seconds, value) of run() under an alarm: pass, fail, error or timeout."""
    start = time.perf_counter()
    value = None
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        value = run()
        status, message = "pass", ""
    except CaseTimeout:
        status, message = "timeout", f"took more than {timeout}s"
    except AssertionError as e:
        status, message = "fail", _message(e)
    except BaseException as e:  # SystemExit too: exiting is not passing
        status, message = "error", _message(e)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return status, message, time.perf_counter() - start, value


def timed(report, index, timeout, run):
    status, message, seconds, _ = attempt(timeout, run)
    report(index, status, message, seconds)


def load_program(path, prelude):
    module = types.ModuleType("solution")
    module.__file__ = path
    sys.modules["solution"] = module
    exec(compile(prelude, "<prelude>", "exec"), module.__dict__)
    with open(path) as fh:
        source = fh.read()
    exec(compile(source, path, "exec"), module.__dict__)
    return module


def pytest_function(module, name):
    if "::" in name:
        cls_name, method = name.split("::", 1)
        instance = getattr(module, cls_name)()
        if hasattr(instance, "setup_method"):
            instance.setup_method(getattr(instance, method))
        return getattr(instance, method)
    return getattr(module, name)


def call_pytest(fn, fixtures):
    """Call a test function once per parametrize set, with fresh fixtures each time."""
    import pytest

    sets = [{}]
    for mark in reversed(getattr(fn, "pytestmark", [])):
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], mark.args[1]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        rows = []
        for value in values:
            if hasattr(value, "values") and hasattr(value, "marks"):
                row = value.values  # pytest.param(...)
            else:
                row = value if len(names) > 1 else (value,)
            rows.append(dict(zip(names, row)))  # noqa: B905 (zip(strict=) is Python 3.10+)
        sets = [dict(s, **r) for s in sets for r in rows]
    for kwargs in sets:
        cleanups, cache = [], {}
        try:
            for name in parameters(fn):
                if name not in kwargs:
                    kwargs[name] = fixture_value(name, fixtures, cache, cleanups, pytest)
            fn(**kwargs)
        finally:
            for cleanup in reversed(cleanups):
                cleanup()


def parameters(fn):
    import inspect

    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]  # fmt: skip


def fixture_value(name, fixtures, cache, cleanups, pytest):
    import inspect

    if name in cache:
        return cache[name]
    if name not in fixtures:
        raise pytest.UsageError(f"fixture {name!r} is not available")
    fn = fixtures[name]
    kwargs = {p: fixture_value(p, fixtures, cache, cleanups, pytest) for p in parameters(fn)}
    if inspect.isgeneratorfunction(fn):
        gen = fn(**kwargs)
        value = next(gen)
        cleanups.append(lambda: next(gen, None))
    else:
        value = fn(**kwargs)
    if hasattr(value, "_hubtools_close"):
        cleanups.append(value._hubtools_close)
    cache[name] = value
    return value


def run_pytest(spec, report, timeout):
    shim = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")
    sys.path.insert(0, shim)  # our pytest, even where the sandbox's Python has the real one
    import pytest

    tests = types.ModuleType("test_solution")
    sys.modules["test_solution"] = tests

    def load():
        # KodCode's runner writes its test file as `from solution import *` + the stored
        # module, and many stored modules call the solution's functions without importing
        # them: Python's own import statement gives the same names (public ones, or __all__).
        exec(compile("from solution import *", "test_solution.py", "exec"), tests.__dict__)
        exec(compile(spec["setup"], "test_solution.py", "exec"), tests.__dict__)

    status, message, _, _ = attempt(timeout, load)
    if status != "pass":
        fail_all(spec, report, "the test module failed to load: " + message)
        return
    fixtures = dict(pytest.BUILTIN_FIXTURES)
    fixtures.update((k, v) for k, v in vars(tests).items() if getattr(v, "_hubtools_fixture", 0))
    for i, name in enumerate(spec["cases"]):
        timed(report, i, timeout, lambda n=name: call_pytest(pytest_function(tests, n), fixtures))


def run_statements(spec, namespace, report, timeout):
    for i, source in enumerate(spec["cases"]):
        code = compile(source, f"<case {i}>", "exec")
        timed(report, i, timeout, lambda c=code: exec(c, namespace))


def check_entry(spec, namespace):
    exec(compile(spec["setup"], "<test module>", "exec"), namespace)
    return eval(spec["entry"], namespace)


def fail_all(spec, report, message):
    for i in range(len(spec["cases"])):
        report(i, "error", message)


def main():
    spec_path, program_path = sys.argv[1], sys.argv[2]
    nonce = os.read(0, 256).decode().strip()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    out = os.dup(1)
    os.dup2(null, 1)  # the program's prints would only be noise in the report
    report = Reporter(nonce, out)
    with open(spec_path, encoding="utf-8") as fh:
        spec = eval(compile(fh.read(), spec_path, "eval"), {"__builtins__": {}})
    timeout = spec["timeout"]
    signal.signal(signal.SIGALRM, _alarm)
    status, message, _, module = attempt(
        timeout, lambda: load_program(program_path, spec["prelude"])
    )
    if status != "pass":
        fail_all(spec, report, "the program failed to load: " + message)
        return
    if spec["kind"] == "pytest":
        run_pytest(spec, report, timeout)
        return
    namespace = module.__dict__  # tests see the program's names, as if appended to it
    if spec["kind"] == "check":
        status, message, _, candidate = attempt(timeout, lambda: check_entry(spec, namespace))
        if status != "pass":
            fail_all(spec, report, "the entry point failed: " + message)
            return
        namespace = dict(namespace)
        namespace[spec["param"]] = candidate
    run_statements(spec, namespace, report, timeout)


if __name__ == "__main__":
    main()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: a program's atexit hooks and threads change nothing
