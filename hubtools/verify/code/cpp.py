"""C++ answers: compile once in the sandbox (compilers parse untrusted input too), run per case.

Competitive programs start with ``#include <bits/stdc++.h>``, and parsing that
header is most of a compile. A precompiled header of it is built once per
machine (per g++ version and flags) in ``$XDG_CACHE_HOME/hubtools/pch/<key>``
and shown read-only to each compile; g++ picks it up through ``-I`` and falls
back to the plain header where it does not apply (e.g. a ``#define`` before the
include), so it never changes what a program means.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hubtools.verify.base import SandboxConfig
from hubtools.verify.code.formats import StdioCases
from hubtools.verify.code.results import CaseResult, run_stdio
from hubtools.verify.code.sandbox import SANDBOX_UID, Box, Limits, Sandbox, reachable

log = logging.getLogger(__name__)

CXX = "/usr/bin/g++"
FLAGS = ("-O2", "-std=c++17", "-DONLINE_JUDGE", "-pipe")  # ONLINE_JUDGE: as Codeforces defines it
PCH_HEADER = "bits/stdc++.h"
COMPILE_WALL_S = 60.0
COMPILE_CPU_S = 30
COMPILE_MEMORY_MB = 2048  # cc1plus maps the ~100 MB PCH and needs room to optimise
_BUILT: dict[tuple, Path | None] = {}  # per process: PCH directory, None when unavailable


def pch_cache_root() -> Path:
    """$HUBTOOLS_PCH_DIR, else the user's cache dir; root's is /var/cache, which the sandbox's
    uid can read (root's home is closed to it)."""
    if os.environ.get("HUBTOOLS_PCH_DIR"):
        return Path(os.environ["HUBTOOLS_PCH_DIR"])
    if os.geteuid() == 0:
        return Path("/var/cache/hubtools/pch")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hubtools" / "pch"


def _compiler_id(cxx: str) -> str:
    run = lambda *a: subprocess.run([cxx, *a], capture_output=True, text=True, check=True)  # noqa: E731
    return f"{os.path.realpath(cxx)} {run('-dumpfullversion').stdout.strip()} " + (
        run("-dumpmachine").stdout.strip()
    )


def _system_header(cxx: str) -> Path:
    """Where g++ finds bits/stdc++.h: the first header its -H trace names."""
    run = subprocess.run(
        [cxx, "-std=c++17", "-x", "c++", "-E", "-H", "-o", os.devnull, "-"],
        input=f"#include <{PCH_HEADER}>\n", capture_output=True, text=True, check=True,
    )  # fmt: skip
    for line in run.stderr.splitlines():
        if line.startswith(". ") and line.endswith(PCH_HEADER):
            return Path(line[2:].strip())
    raise FileNotFoundError(f"{cxx} has no <{PCH_HEADER}>")


def ensure_pch(
    cxx: str = CXX, flags: tuple[str, ...] = FLAGS, root: Path | None = None
) -> Path | None:
    """The directory holding bits/stdc++.h.gch for these flags, built on first use; None if g++
    cannot build one. Concurrent workers wait on a lock instead of building it side by side."""
    memo = (cxx, flags, root)
    if memo not in _BUILT:
        _BUILT[memo] = _ensure_pch(cxx, flags, root or pch_cache_root())
    return _BUILT[memo]


def _ensure_pch(cxx: str, flags: tuple[str, ...], root: Path) -> Path | None:
    try:
        key = hashlib.blake2b(f"{_compiler_id(cxx)} {' '.join(flags)}".encode(), digest_size=8)
    except (OSError, subprocess.CalledProcessError) as e:
        log.warning("no precompiled header: %s does not run (%s)", cxx, e)
        return None
    directory = root / key.hexdigest()
    gch = directory / f"{PCH_HEADER}.gch"
    try:
        gch.parent.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not gch.exists():
                _build(cxx, flags, gch)
        for path in (directory, gch.parent):
            path.chmod(0o755)  # the sandbox's uid reads it
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("no precompiled header for %s (%s); C++ compiles will be slower", cxx, e)
        return None
    if not reachable(gch):
        log.warning("no precompiled header: uid %d cannot read %s", SANDBOX_UID, gch)
        return None
    return directory


def _build(cxx: str, flags: tuple[str, ...], gch: Path) -> None:
    """Compile the system header as trusted input, on the host, then publish it atomically."""
    partial = gch.with_name(f"{gch.name}.{os.getpid()}.tmp")
    cmd = [cxx, *flags, "-x", "c++-header", str(_system_header(cxx)), "-o", str(partial)]
    try:
        subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
        partial.chmod(0o644)
        os.replace(partial, gch)
    finally:
        partial.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compile's outcome: the binary's path as the sandbox sees it, or why there is none."""

    binary: str | None
    result: CaseResult
    pch: bool

    def to_dict(self) -> dict:
        return {"ok": self.binary is not None, "pch": self.pch, **self.result.to_dict()}


class CppRunner:
    """g++ in the sandbox, then the binary once per stdin/stdout case."""

    def __init__(self, sandbox: Sandbox, config: SandboxConfig, use_pch: bool = True):
        self.sandbox, self.config, self.use_pch = sandbox, config, use_pch
        self.cxx = shutil.which("g++", path="/usr/bin") or CXX

    def compile(self, box: Box, source: str) -> Compiled:
        source_path = box.write("main.cpp", source)
        binary = f"{box.inside}/prog"
        flags = list(FLAGS)
        pch_dir = ensure_pch(self.cxx) if self.use_pch else None
        if pch_dir is not None:
            flags += ["-I", self.sandbox.bind(box, "/pch", pch_dir)]
        limits = Limits(
            wall_s=COMPILE_WALL_S, cpu_s=COMPILE_CPU_S,
            memory_mb=max(self.config.memory_mb, COMPILE_MEMORY_MB), fsize_mb=256,
            stdout_bytes=1 << 20,
        )  # fmt: skip
        run = self.sandbox.run(box, [self.cxx, *flags, "-o", binary, source_path], limits,
                               writable=True)  # fmt: skip
        box.binds.pop("/pch", None)
        status = run.status()
        if status == "ok" and (box.host / "prog").is_file():
            return Compiled(binary, CaseResult("pass", run.wall_s), pch_dir is not None)
        message = "compile timed out" if status == "timeout" else f"compile failed ({status})"
        return Compiled(None, CaseResult("compile_error", run.wall_s, message, run.stderr),
                        pch_dir is not None)  # fmt: skip

    def run_stdio(self, box: Box, compiled: Compiled, group: StdioCases) -> list[CaseResult]:
        if compiled.binary is None:
            return [CaseResult("compile_error", 0.0, compiled.result.message) for _ in group.cases]
        return run_stdio(self.sandbox, box, [compiled.binary], group, self.config)
