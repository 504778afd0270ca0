"""Running untrusted programs: bubblewrap namespaces, an unprivileged uid, rlimits, a wall clock.

Each run is a fresh `bwrap` sandbox: every namespace unshared (no network, not
even the host's loopback; its own pids, so it sees and signals nothing outside
and nothing survives it), a read-only view of /usr only (no $HOME, no project
directory, and of /etc only /etc/alternatives: Debian's links that pick, e.g.,
the BLAS library numpy loads), the program's files read-only at /box, and a
fresh size-capped tmpfs at /tmp as the only writable place. The environment is
rebuilt from nothing. Limits are set inside the sandbox by util-linux `prlimit`
(so RLIMIT_NPROC counts only this sandbox's processes: the kernel counts them
per user namespace), and at the wall clock the sandbox's init is killed, which
makes the kernel kill its whole pid namespace. /dev is read-only (so no
/dev/shm: Python's multiprocessing does not work inside).

When hubtools runs as root, bwrap itself is started as `nobody` (65534): the
kernel does not enforce RLIMIT_NPROC for root's processes, and a sandboxed
process that is root on the host owns every root-owned file it can see. So
everything bound into the sandbox must then be reachable by `nobody` (boxes
live in the system temp dir, the C++ header cache in /var/cache).
"""

from __future__ import annotations

import json
import logging
import os
import select
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from hubtools.errors import HubtoolsError
from hubtools.verify.base import SandboxConfig

log = logging.getLogger(__name__)

BOX = "/box"  # where the program's files appear inside the sandbox
SANDBOX_UID = 65534  # `nobody`, inside the sandbox and (when we are root) outside it
PRLIMIT = "/usr/bin/prlimit"
ALTERNATIVES = "/etc/alternatives"  # Debian's alternatives links (see _system_view)
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}
STDERR_TAIL = 4096


class SandboxUnavailable(HubtoolsError):
    """Model code cannot be run safely here (no bubblewrap, or no user namespaces)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one run may use; everything else about the run is fixed by the sandbox."""

    wall_s: float
    cpu_s: float
    memory_mb: int
    fsize_mb: int = 64  # largest file it may write (and the /tmp tmpfs size)
    nproc: int = 64  # processes and threads in this sandbox
    nofile: int = 256
    stack_mb: int = 256
    stdout_bytes: int = 16 << 20  # more than this is an error, and the run is killed

    @classmethod
    def from_config(cls, config: SandboxConfig, *, tests: int = 1, **overrides) -> Limits:
        """Per-test limits times the number of tests run in one process."""
        return cls(
            wall_s=config.timeout_s * tests, cpu_s=config.cpu_s * tests,
            memory_mb=config.memory_mb, **overrides,
        )  # fmt: skip

    def prlimit_args(self) -> list[str]:
        mb = 1 << 20
        cpu = max(1, int(self.cpu_s + 0.999))
        stack = min(self.stack_mb, self.memory_mb) * mb
        return [
            PRLIMIT,
            f"--cpu={cpu}:{cpu + 1}",  # SIGXCPU first, SIGKILL a second later
            f"--as={self.memory_mb * mb}:{self.memory_mb * mb}",
            f"--fsize={self.fsize_mb * mb}:{self.fsize_mb * mb}",
            f"--nproc={self.nproc}:{self.nproc}",
            f"--nofile={self.nofile}:{self.nofile}",
            f"--stack={stack}:{stack}",
            "--core=0:0",
            "--",
        ]


@dataclass(slots=True)
class RunResult:
    """How a run ended; `returncode` is None when the wall clock or the output cap killed it."""

    returncode: int | None
    stdout: bytes
    stderr: str  # the last STDERR_TAIL characters
    wall_s: float
    timed_out: bool = False
    output_limited: bool = False

    @property
    def signal(self) -> int | None:
        """The signal that ended the program (bwrap reports it as 128 + signal)."""
        rc = self.returncode
        if rc is None:
            return None
        if rc < 0:
            return -rc
        return rc - 128 if 128 < rc < 128 + 65 else None

    def status(self) -> str:
        """One word for the details: ok, timeout, output_limit, signal:N or exit:N."""
        if self.timed_out:
            return "timeout"
        if self.output_limited:
            return "output_limit"
        if self.returncode == 0:
            return "ok"
        sig = self.signal
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return "timeout"  # the CPU limit
        return f"signal:{signal.Signals(sig).name}" if sig else f"exit:{self.returncode}"


@dataclass(slots=True)
class Box:
    """A run's files on the host: bound read-only (read-write for a compile) at BOX."""

    host: Path
    inside: str  # the path programs use: BOX, or `host` itself when unsandboxed
    binds: dict[str, Path] = field(default_factory=dict)  # more read-only dirs: inside -> host
    env: dict[str, str] = field(default_factory=dict)  # set on top of ENV for every run

    def write(self, name: str, data: str | bytes, mode: int = 0o644) -> str:
        path = self.host / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(mode)
        return f"{self.inside}/{name}"


_PROBED: dict[tuple[str, int], str | None] = {}  # (bwrap, euid) -> None when usable, else why


class Sandbox:
    """Runs argv in a fresh sandbox per call; a plain picklable object (config + paths)."""

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        self.bwrap = shutil.which("bwrap") or "/usr/bin/bwrap"

    @property
    def sandboxed(self) -> bool:
        """True with bubblewrap; False in the opted-in unsandboxed mode; raises otherwise."""
        why = self.unavailable_reason()
        if why is None:
            return True
        if self.config.allow_unsandboxed:
            return False
        raise SandboxUnavailable(
            f"refusing to run model code without a sandbox: {why}; install bubblewrap "
            "(apt-get install bubblewrap) or set verify.code.allow_unsandboxed: true"
        )

    def unavailable_reason(self) -> str | None:
        key = (self.bwrap, os.geteuid())
        if key not in _PROBED:
            _PROBED[key] = _probe(self)
        return _PROBED[key]

    @contextmanager
    def box(self) -> Iterator[Box]:
        """A fresh host directory for one answer's files, removed afterwards."""
        host = Path(tempfile.mkdtemp(prefix="hubtools-box-"))
        try:
            host.chmod(0o755)
            yield Box(host, BOX if self.sandboxed else str(host))
        finally:
            shutil.rmtree(host, ignore_errors=True)

    def bind(self, box: Box, inside: str, host: Path) -> str:
        """Show a host directory read-only at `inside`; returns the path programs use."""
        if not self.sandboxed:
            return str(host)
        box.binds[inside] = Path(host)
        return inside

    def run(
        self,
        box: Box,
        argv: Sequence[str],
        limits: Limits,
        *,
        stdin: bytes = b"",
        writable: bool = False,
    ) -> RunResult:
        """Run argv (paths as programs see them) with stdin; never raises for the program's sake."""
        sandboxed = self.sandboxed
        if writable and os.geteuid() == 0:
            os.chown(box.host, SANDBOX_UID, SANDBOX_UID)  # nobody writes the compiler's output
        scratch = None
        try:
            if sandboxed:
                cmd = self._bwrap_argv(box, limits, writable)
            else:
                log.warning(
                    "RUNNING MODEL CODE WITHOUT A SANDBOX (verify.code.allow_unsandboxed): "
                    "it can read your files and reach the network; install bubblewrap"
                )
                cmd, scratch = [], tempfile.mkdtemp(prefix="hubtools-scratch-")
            cmd += limits.prlimit_args() + list(argv)
            return _execute(cmd, stdin, limits, sandboxed, cwd=scratch, env=box.env)
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)

    def _bwrap_argv(self, box: Box, limits: Limits, writable: bool) -> list[str]:
        argv = [self.bwrap, *_BASE_FLAGS, "--size", str(limits.fsize_mb << 20), "--tmpfs", "/tmp"]
        argv += ["--bind" if writable else "--ro-bind", str(box.host), BOX]
        for inside, host in box.binds.items():
            argv += ["--ro-bind", str(host), inside]
        for key, value in box.env.items():
            argv += ["--setenv", key, value]
        return argv + ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp", "--"]


def reachable(path: Path) -> bool:
    """Whether the sandbox's uid can reach `path` (when we are root, bwrap runs as that uid)."""
    if os.geteuid() != 0:
        return True  # bwrap runs as us
    path = path.resolve()
    need = 0o005 if path.is_dir() else 0o004  # others may list a dir, read a file
    return path.stat().st_mode & need == need and all(p.stat().st_mode & 1 for p in path.parents)


def _system_view() -> list[str]:
    """/usr read-only, plus the usual top-level links into it (merged-/usr or not).

    And /etc/alternatives: /usr's libblas.so.3 and liblapack.so.3 are links through it,
    so without it numpy cannot load. It holds only links, most of them back into /usr.
    """
    flags = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        top = Path("/") / name
        if top.is_symlink():
            flags += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            flags += ["--ro-bind", str(top), str(top)]
    if Path(ALTERNATIVES).is_dir():
        flags += ["--ro-bind", ALTERNATIVES, ALTERNATIVES]
    return flags


_BASE_FLAGS = [
    "--unshare-all",  # user, ipc, pid, net, uts, cgroup: no network, no host pids
    "--unshare-user",  # required (not just tried) so that --disable-userns applies
    "--disable-userns",  # no nested namespaces: less kernel surface for the program
    "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
    "--die-with-parent",  # the sandbox goes when the verifier does
    "--new-session",  # no controlling terminal (TIOCSTI)
    "--cap-drop", "ALL",
    *_system_view(),
    "--proc", "/proc",  # this pid namespace's /proc: /proc/1 is the sandbox's own init
    "--dev", "/dev",  # null, zero, random, urandom, tty; made read-only below
    "--clearenv",
    *[arg for key, value in ENV.items() for arg in ("--setenv", key, value)],
]  # fmt: skip


def _probe(sandbox: Sandbox) -> str | None:
    """Why a sandbox cannot be made here, or None: one real, trivial run."""
    if not Path(sandbox.bwrap).exists():
        return "bubblewrap (bwrap) is not installed"
    if not Path(PRLIMIT).exists():
        return f"{PRLIMIT} (util-linux) is missing"
    if not reachable(Path(tempfile.gettempdir())):
        return f"the temp dir {tempfile.gettempdir()} is not reachable by uid {SANDBOX_UID}"
    limits = Limits(wall_s=10, cpu_s=5, memory_mb=256)
    host = Path(tempfile.mkdtemp(prefix="hubtools-probe-"))
    try:
        host.chmod(0o755)
        argv = sandbox._bwrap_argv(Box(host, BOX), limits, False)
        result = _execute(argv + limits.prlimit_args() + ["/bin/true"], b"", limits, True)
    except OSError as e:
        return f"bwrap could not start ({e})"
    finally:
        shutil.rmtree(host, ignore_errors=True)
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1:] or [result.status()]
        return f"bwrap cannot create a sandbox here ({detail[0]})"
    return None


def _execute(
    cmd: list[str], stdin: bytes, limits: Limits, sandboxed: bool, cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> RunResult:  # fmt: skip
    """Start cmd in its own process group, feed stdin, collect capped output, enforce the clock."""
    drop = os.geteuid() == 0 and sandboxed
    stdin_fd = os.memfd_create("stdin", os.MFD_CLOEXEC)  # no pipe to deadlock on
    info_r, info_w = os.pipe() if sandboxed else (None, None)
    if sandboxed:
        cmd = [cmd[0], "--info-fd", str(info_w), *cmd[1:]]  # bwrap reports its init's pid there
    try:
        view = memoryview(stdin)
        while view:
            view = view[os.write(stdin_fd, view) :]
        os.lseek(stdin_fd, 0, os.SEEK_SET)
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdin=stdin_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(info_w,) if sandboxed else (), env={**ENV, **(env or {})}, cwd=cwd,
            start_new_session=True, user=SANDBOX_UID if drop else None,
            group=SANDBOX_UID if drop else None, extra_groups=[] if drop else None,
        )  # fmt: skip
    except BaseException:
        if info_r is not None:
            os.close(info_r)
        raise
    finally:
        os.close(stdin_fd)
        if info_w is not None:
            os.close(info_w)
    with os.fdopen(info_r, "rb") if info_r is not None else nullcontext() as info:
        return _collect(proc, start, limits, info)


def _collect(proc: subprocess.Popen, start: float, limits: Limits, info) -> RunResult:
    out, err, about = bytearray(), bytearray(), bytearray()
    timed_out = limited = False
    init: int | None = None  # a pidfd of the sandbox's init, once bwrap has told us its pid
    deadline = start + limits.wall_s
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        if info is not None:
            sel.register(info, selectors.EVENT_READ, about)
        exited_at = None
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.5:
                break  # something outside a sandbox kept the pipes open; it is not waited for
            for key, _ in sel.select(timeout=min(deadline - now, 0.1)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = key.data
                buf += chunk
                if buf is err and len(err) > 2 * STDERR_TAIL:
                    del err[: len(err) - STDERR_TAIL]
                if buf is about and init is None:
                    init = _open_init(about, proc)
            if len(out) > limits.stdout_bytes:
                limited = True
                break
    _end(proc, init, kill=timed_out or limited)
    returncode = None if (timed_out or limited) else proc.returncode
    proc.stdout.close()
    proc.stderr.close()
    return RunResult(
        returncode=returncode, stdout=bytes(out[: limits.stdout_bytes]),
        stderr=err.decode("utf-8", "replace")[-STDERR_TAIL:], wall_s=time.monotonic() - start,
        timed_out=timed_out, output_limited=limited,
    )  # fmt: skip


def _open_init(info: bytes, proc: subprocess.Popen) -> int | None:
    """A pidfd of the sandbox's init, from bwrap's --info-fd JSON (None until it is complete).

    Safe from pid reuse: bwrap, the init's parent, is still running while we read its info
    (it has not been waited for), so the pid still names the init or its zombie.
    """
    try:
        pid = int(json.loads(info)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _end(proc: subprocess.Popen, init: int | None, kill: bool) -> None:
    """End what is left of a run, and return only when all of it is gone.

    The sandbox's init leaving makes the kernel kill every process in its pid
    namespace, and the init's exit completes only once they are all gone: so we
    kill the init when the run must stop, and in every case wait for its exit.
    (bwrap itself may exit a moment before its init does, and killing bwrap would
    leave the rest to an asynchronous death signal.)
    """
    if init is not None:
        try:
            if kill:
                signal.pidfd_send_signal(init, signal.SIGKILL)
            poller = select.poll()
            poller.register(init, select.POLLIN)
            poller.poll(30_000)  # readable once the init has exited; the kernel finishes fast
        except OSError:
            pass
        finally:
            os.close(init)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group: bwrap itself, or an unsandboxed program
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already
    proc.wait()
