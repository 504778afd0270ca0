"""Hostile programs against the sandbox: each attack fails, and each run ends within its limits.

Every attack runs for real in `Sandbox.run` (bubblewrap); the host side of each
attack (a listener, a victim process, a secret in the environment) is real too.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from hubtools.records import Query
from hubtools.verify.base import SandboxConfig
from hubtools.verify.code import CodeVerifier
from hubtools.verify.code.sandbox import (
    SANDBOX_UID,
    Limits,
    RunResult,
    Sandbox,
    SandboxUnavailable,
)

PYTHON = "/usr/bin/python3"
SANDBOX = Sandbox(SandboxConfig())
LIMITS = Limits(wall_s=5, cpu_s=3, memory_mb=512)
PROJECT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    SANDBOX.unavailable_reason() is not None,
    reason=f"no sandbox here: {SANDBOX.unavailable_reason()}",
)


TRY = """
import json, os, socket, time
def attempt(fn):
    try:
        return "ok: " + repr(fn())[:200]
    except BaseException as e:
        return type(e).__name__
"""


def run_py(code: str, limits: Limits = LIMITS, token: str = "", **kwargs) -> RunResult:
    """Run an attack (with the `attempt` helper defined) in a fresh sandbox; `token` goes on its
    command line, which forked children keep, so the host can look for survivors."""
    with SANDBOX.box() as box:
        path = box.write("attack.py", TRY + code)
        return SANDBOX.run(box, [PYTHON, "-I", "-B", path, token], limits, **kwargs)


def report(result: RunResult) -> dict:
    """The JSON object an attack prints as its last line."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def within(result: RunResult, limits: Limits = LIMITS) -> None:
    assert result.wall_s < limits.wall_s + 1.0, f"the run took {result.wall_s:.1f}s"


def processes_with(token: str) -> list[int]:
    """Host pids whose command line contains token (the sandbox's pids are host pids too)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and token.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_no_network_not_even_the_hosts_loopback():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(f"\0hubtools-test-{uuid.uuid4().hex}")  # abstract sockets are per network namespace
    unix.listen()
    accepted = []

    def accept():
        listener.settimeout(8)
        try:
            while True:
                accepted.append(listener.accept()[0])
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    name = unix.getsockname()
    code = f"""
def connect(family, address):
    s = socket.socket(family)
    s.settimeout(2)
    s.connect(address)
    return "connected"
print(json.dumps({{
    "loopback": attempt(lambda: connect(socket.AF_INET, ("127.0.0.1", {port}))),
    "abstract": attempt(lambda: connect(socket.AF_UNIX, {name!r})),
    "internet": attempt(lambda: connect(socket.AF_INET, ("1.1.1.1", 53))),
    "dns": attempt(lambda: socket.getaddrinfo("huggingface.co", 443)),
    "interfaces": sorted(n for _, n in socket.if_nameindex()),
}}))
"""
    result = run_py(code)
    outcome = report(result)
    assert outcome["loopback"] == "ConnectionRefusedError"  # its own empty loopback
    assert outcome["abstract"] in ("ConnectionRefusedError", "FileNotFoundError")
    assert outcome["internet"] == "OSError"  # network unreachable
    assert outcome["dns"] == "gaierror"
    assert outcome["interfaces"] == ["lo"]
    within(result)
    socket.create_connection(("127.0.0.1", port)).close()  # the listener was real and listening
    time.sleep(0.2)
    assert len(accepted) == 1
    listener.close()
    unix.close()


def test_no_host_files():
    home = os.path.expanduser("~")
    targets = {
        "passwd": "/etc/passwd", "shadow": "/etc/shadow", "home": home, "root": "/root",
        "project": str(PROJECT), "this_test": __file__, "shared": str(PROJECT.parent / "shared"),
        "work": "/work", "host_proc_root": "/proc/1/root/etc/passwd",
    }  # fmt: skip
    code = f"""
targets = {targets!r}
def read(path):
    return os.listdir(path) if os.path.isdir(path) else open(path).read()
out = {{k: attempt(lambda p=p: read(p)) for k, p in targets.items()}}
out["/"] = sorted(os.listdir("/"))
out["/etc"] = sorted(os.listdir("/etc"))
print(json.dumps(out))
"""
    result = run_py(code)
    outcome = report(result)
    for key in targets:
        assert outcome[key] in ("FileNotFoundError", "PermissionError"), (key, outcome[key])
    assert outcome["/"] == sorted(["bin", "box", "dev", "etc", "lib", "lib64", "proc", "sbin",
                                   "tmp", "usr"])  # fmt: skip
    assert outcome["/etc"] == ["alternatives"]  # Debian's links (libblas.so.3...), nothing else
    assert b"root:" not in result.stdout
    within(result)


def test_writes_only_to_its_own_tmp():
    with SANDBOX.box() as box:
        targets = ["/x", "/usr/x", "/usr/lib/x", "/box/x", "/dev/x", "/dev/shm/x", "/proc/x",
                   "/bin/x", str(PROJECT / "x")]  # fmt: skip
        code = f"""
def write(path):
    with open(path, "w") as f:
        f.write("pwned")
out = {{p: attempt(lambda p=p: write(p)) for p in {targets!r}}}
out["/tmp"] = attempt(lambda: write("/tmp/ok"))
print(json.dumps(out))
"""
        path = box.write("attack.py", TRY + code)
        result = SANDBOX.run(box, [PYTHON, "-I", "-B", path], LIMITS)
        outcome = report(result)
        assert sorted(p.name for p in box.host.iterdir()) == ["attack.py"]
    assert outcome.pop("/tmp") == "ok: None"
    for target, what in outcome.items():
        assert what in ("OSError", "PermissionError", "FileNotFoundError"), (target, what)
    assert not (PROJECT / "x").exists()
    within(result)
    # and every run's /tmp is a fresh one
    again = report(run_py("print(json.dumps(attempt(lambda: os.listdir('/tmp'))))"))
    assert again == "ok: []"


def test_tmp_is_size_capped():
    code = """
def fill():
    for i in range(1000):
        with open(f"/tmp/f{i}", "wb") as f:
            f.write(b"x" * (8 << 20))
print(json.dumps(attempt(fill)))
"""
    limits = Limits(wall_s=10, cpu_s=5, memory_mb=256, fsize_mb=32)
    result = run_py(code, limits)
    assert report(result) == "OSError"  # no space left on the 32 MB tmpfs
    within(result, limits)


def test_fork_bomb_is_contained():
    token = uuid.uuid4().hex
    code = """
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    limits = Limits(wall_s=3, cpu_s=3, memory_mb=256, nproc=32)
    start = time.monotonic()
    result = run_py(code, limits, token)
    assert result.status() == "timeout"
    within(result, limits)
    assert time.monotonic() - start < limits.wall_s + 2
    assert processes_with(token) == []  # every fork went with the sandbox


def test_memory_bomb_is_refused():
    code = """
blocks = []
while True:
    blocks.append(bytearray(64 << 20))
"""
    result = run_py(code)
    assert result.returncode != 0 and "MemoryError" in result.stderr
    within(result)
    huge = run_py("x = bytearray(64 << 30)")
    assert "MemoryError" in huge.stderr
    within(huge)


def test_cpu_loop_is_stopped_by_the_cpu_limit():
    limits = Limits(wall_s=20, cpu_s=1, memory_mb=256)
    result = run_py("while True:\n    pass\n", limits)
    assert result.status() == "timeout"
    assert result.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert result.wall_s < 4  # the CPU limit, not the 20 s wall clock


def test_sleep_forever_is_stopped_by_the_wall_clock():
    limits = Limits(wall_s=1, cpu_s=5, memory_mb=256)
    result = run_py("import time\ntime.sleep(10**9)\n", limits)
    assert result.timed_out and result.status() == "timeout"
    assert 1 <= result.wall_s < 2


def test_output_flood_is_cut_off():
    limits = Limits(wall_s=10, cpu_s=5, memory_mb=256, stdout_bytes=1 << 20)
    result = run_py("while True:\n    print('x' * 4096)\n", limits)
    assert result.output_limited and result.status() == "output_limit"
    assert len(result.stdout) == 1 << 20
    assert result.wall_s < 3


DAEMON = """
import os, signal, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        time.sleep({delay})
        with open("/box/marker", "w") as f:
            f.write("still alive")
        os._exit(0)
    os._exit(0)
time.sleep({linger})
"""


@pytest.mark.parametrize("how", ["exits", "times-out"])
def test_no_process_outlives_the_run(how):
    token = uuid.uuid4().hex
    linger = 0 if how == "exits" else 60
    limits = Limits(wall_s=1, cpu_s=5, memory_mb=256)
    with SANDBOX.box() as box:
        path = box.write("attack.py", DAEMON.format(delay=1.0, linger=linger))
        result = SANDBOX.run(box, [PYTHON, "-I", "-B", path, token], limits, writable=True)
        assert result.timed_out == (how == "times-out")
        within(result, limits)
        assert processes_with(token) == []  # gone when run() returns, not a moment later
        time.sleep(2.0)  # well past the daemon's wake-up
        assert not (box.host / "marker").exists()
        assert processes_with(token) == []
        # the control: a run that outlasts its daemon's sleep does find the marker written
        path = box.write("attack.py", DAEMON.format(delay=0.1, linger=1.0))
        control = SANDBOX.run(box, [PYTHON, "-I", "-B", path], Limits(5, 5, 256), writable=True)
        assert control.returncode == 0 and (box.host / "marker").exists()


def test_no_signals_to_processes_outside():
    root = os.geteuid() == 0
    # the victim runs as the sandbox's own host uid where we can: only the pid namespace saves it
    victim = subprocess.Popen(["sleep", "60"], user=SANDBOX_UID if root else None)
    try:
        code = f"""
out = {{
    "kill": attempt(lambda: os.kill({victim.pid}, 9)),
    "kill_all": attempt(lambda: os.kill(-1, 9)),
    "ppid": os.getppid(),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
}}
print(json.dumps(out))
"""
        result = run_py(code)
        outcome = report(result)
        assert outcome["kill"] == "ProcessLookupError"
        # kill(-1) reaches every process it may signal: none but its own (there are none here)
        assert outcome["kill_all"] in ("ok: None", "ProcessLookupError")
        assert outcome["pids"] == [1, 2] and outcome["ppid"] == 1
        within(result)
        time.sleep(0.2)
        assert victim.poll() is None, "the host process was killed"
    finally:
        victim.kill()
        victim.wait()


def test_environment_holds_no_secrets(monkeypatch):
    secret = f"hf_{uuid.uuid4().hex}"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    code = """
def environ_files():
    found = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            found[pid] = attempt(lambda p=pid: open(f"/proc/{p}/environ", "rb").read().decode())
    return found
print(json.dumps({"env": dict(os.environ), "files": environ_files()}))
"""
    result = run_py(code)
    outcome = report(result)
    assert secret not in result.stdout.decode()
    assert outcome["env"] == {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp",
                              "PWD": "/tmp"}  # fmt: skip
    assert "1" in outcome["files"]  # /proc/1 is the sandbox's init, not the host's
    within(result)


def test_no_privileges_inside():
    code = """
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines())
print(json.dumps({
    "uid": os.getuid(), "caps": status["CapEff"].strip(), "setuid": attempt(lambda: os.setuid(0)),
    "userns": attempt(lambda: os.unshare(os.CLONE_NEWUSER)) if hasattr(os, "unshare") else "n/a",
    "hostname": socket.gethostname(),
}))
"""
    result = run_py(code)
    outcome = report(result)
    within(result)
    assert outcome["uid"] == SANDBOX_UID and outcome["caps"] == "0000000000000000"
    assert outcome["setuid"] in ("PermissionError", "OSError")  # EPERM, or EINVAL: 0 is unmapped
    assert outcome["userns"] in ("PermissionError", "OSError", "n/a")


def test_the_compiler_sees_no_host_files_either():
    query = Query.from_prompt("p", source="t", category="code", meta={"language": "cpp"},
                              tests=[{"input": "", "output": "1"}])  # fmt: skip
    for path in ("/etc/passwd", str(PROJECT / "pyproject.toml"), os.path.expanduser("~/.bashrc")):
        program = f'#include "{path}"\nint main() {{ return 0; }}\n'
        score = CodeVerifier().verify(query, f"```cpp\n{program}```")
        assert score.value == 0.0 and not score.details["compile"]["ok"]
        assert "No such file or directory" in score.details["compile"]["stderr"]
        assert score.details["time_s"] < 60


def test_runs_as_an_unprivileged_host_user():
    """Outside the sandbox its processes are `nobody` when we are root (RLIMIT_NPROC holds)."""
    token = uuid.uuid4().hex
    done = threading.Event()
    thread = threading.Thread(
        target=lambda: (run_py("time.sleep(2)", token=token), done.set()), daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 5
    while not processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    uids = set()
    for pid in processes_with(token):
        status = Path(f"/proc/{pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        uids.add(int(uid_line.split()[1]))
    thread.join()
    assert uids == {SANDBOX_UID if os.geteuid() == 0 else os.getuid()}


def test_refuses_without_bubblewrap_unless_opted_in(caplog):
    missing = Sandbox(SandboxConfig())
    missing.bwrap = "/nonexistent/bwrap"
    with pytest.raises(SandboxUnavailable, match="install bubblewrap") as e:
        with missing.box():
            pass
    assert "\n" not in str(e.value)
    verifier = CodeVerifier()
    verifier.sandbox.bwrap = "/nonexistent/bwrap"
    query = Query.from_prompt("p", source="t", category="code", tests=[{"input": "", "output": ""}])
    with pytest.raises(SandboxUnavailable):
        verifier.verify(query, "```python\nprint()\n```")

    weak = Sandbox(SandboxConfig(allow_unsandboxed=True))
    weak.bwrap = "/nonexistent/bwrap"
    with caplog.at_level(logging.WARNING), weak.box() as box:
        path = box.write("hello.py", "import os\nprint(sorted(os.environ))")
        for _ in range(2):
            result = weak.run(box, [PYTHON, "-I", "-B", path], LIMITS)
            assert result.returncode == 0
            assert json.loads(result.stdout.decode().replace("'", '"')) == ["HOME", "LANG", "PATH"]
    warnings = [r for r in caplog.records if "WITHOUT A SANDBOX" in r.getMessage()]
    assert len(warnings) == 2  # every run says so
