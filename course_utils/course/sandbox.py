"""The grading sandbox: a student's kernel in a box, with nothing of the course in reach but the installed package.

Only the kernel is boxed. nbgrader, the gradebook, the instructor's source, the hidden tests and the CSV stay in
the grader's own processes, which talk to the kernel through Unix sockets and files in one exchange folder.

Isolation used on Linux, and why:

- **bubblewrap** (``bwrap``, Debian package ``bubblewrap``): new user, mount, PID, network, IPC and UTS namespaces,
  all capabilities dropped, a new session. The kernel sees a read-only view of the system's libraries, the Python
  installation, the virtual environment and the ``course_utils`` package, and nothing else of the course (no
  ``solutions/``, no other homework, no gradebook): a private ``/tmp``, a throwaway home and working folder, a
  cleared environment, no network at all (not even the host's loopback). It needs no daemon and no Docker, works as
  root and, where user namespaces are allowed, as any user; when the grader stops the kernel, the PID namespace ends
  and every process the student started ends with it.
- **limits**: address space, open files, largest file written (rlimits, set by ``_launch.py``); where the machine
  lets the grader make control groups (cgroup v1 as root, as on CI), a memory limit for the whole box (the kernel
  is killed and the status says ``out of memory``) and a process limit for the whole box; elsewhere the process
  limit is an rlimit. Time limits and the output limit are the grader's (it stops reading and kills the box).

Without bubblewrap (macOS, Windows, a Linux without user namespaces) there is no isolation, and ``course grade``
refuses unless the instructor passes ``--unsandboxed``; then every row of the CSV says so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Limits", "Isolation", "detect_isolation", "Sandbox"]

_LAUNCH = Path(__file__).with_name("_launch.py")


@dataclass
class Limits:
    """What one submission may use."""

    memory_mb: int = 4096        # the whole box (cgroup), and each process's address space (rlimit) as a backstop
    processes: int = 256         # processes and threads in the box
    output_mb: float = 4.0       # notebook outputs the grader records (the rest is dropped; status `output too large`)
    file_mb: int = 1024          # the largest file the kernel may write
    open_files: int = 1024


@dataclass
class Isolation:
    kind: str                    # "bubblewrap" or "none"
    cgroup: str | None = None    # "cgroup v1" when the box gets memory and process limits as a whole
    notes: list[str] = field(default_factory=list)
    sized_tmpfs: bool = False    # this bubblewrap can cap its tmpfs folders (--size, bubblewrap >= 0.7)

    @property
    def summary(self) -> str:
        if self.kind == "none":
            return "NONE (--unsandboxed): the student's code ran with the grader's rights"
        limits = "memory and process limits per box (" + self.cgroup + ")" if self.cgroup else \
            "per-process memory limit (rlimit), no whole-box memory limit"
        return f"bubblewrap (no network, private PID/mount/IPC namespaces, read-only package); {limits}"

    def to_dict(self) -> dict:
        return asdict(self)


def _bwrap() -> str | None:
    """The bubblewrap executable (``$COURSE_BWRAP`` names another one, e.g. to test the refusal without it)."""
    return shutil.which(os.environ.get("COURSE_BWRAP", "bwrap"))


def _bwrap_works() -> str | None:
    """None if bubblewrap can make a box here, else why not."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap needs Linux; this is {sys.platform}"
    exe = _bwrap()
    if not exe:
        return "bubblewrap is not installed (Debian/Ubuntu: `sudo apt-get install bubblewrap`)"
    try:
        proc = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "--cap-drop", "ALL",
                               "--", "/bin/true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bubblewrap does not run: {err}"
    if proc.returncode != 0:
        return f"bubblewrap cannot make namespaces here: {proc.stderr.strip()[:200]}"
    return None


def _cgroup_v1_root() -> dict[str, Path] | None:
    """Writable cgroup v1 memory and pids hierarchies (as root on machines like CI's), else None."""
    roots = {c: Path("/sys/fs/cgroup") / c for c in ("memory", "pids")}
    if not all((r / "cgroup.procs").exists() for r in roots.values()):
        return None
    found = {}
    for c, r in roots.items():
        probe = r / f"course-probe-{uuid.uuid4().hex[:8]}"
        try:
            probe.mkdir()
            probe.rmdir()
        except OSError:
            return None
        found[c] = r
    return found


def detect_isolation(allow_unsandboxed: bool = False) -> Isolation:
    """The best isolation this machine offers; refuse (SystemExit) when there is none unless explicitly allowed."""
    why = _bwrap_works()
    if why:
        if not allow_unsandboxed:
            raise SystemExit(
                f"course grade: no sandbox for the students' code: {why}.\n"
                "Grading runs every submission's code; without a sandbox a submission can read the hidden tests and "
                "solutions and change grades. Install bubblewrap, or pass --unsandboxed to grade anyway (every row "
                "of the CSV will say so).")
        return Isolation("none", None, [why])
    cg = _cgroup_v1_root()
    sized = subprocess.run([_bwrap(), "--ro-bind", "/", "/", "--size", "1048576", "--tmpfs", "/tmp", "--unshare-all",
                            "--", "/bin/true"], capture_output=True, timeout=30).returncode == 0
    return Isolation("bubblewrap", "cgroup v1" if cg else None,
                     [] if cg else ["no writable control groups: memory is limited per process, processes by rlimit"],
                     sized_tmpfs=sized)


def _python_paths() -> list[Path]:
    """What the kernel needs of Python: the installation, the environment and the course package (if it lives
    elsewhere, as with an editable install)."""
    import course_utils

    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
             Path(os.path.realpath(sys.executable)).parent.parent}
    paths.add(Path(course_utils.__file__).resolve().parent)
    return sorted(paths)


_SYSTEM = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache", "/etc/ld.so.conf",
           "/etc/ld.so.conf.d", "/etc/localtime", "/etc/fonts", "/etc/alternatives", "/etc/nsswitch.conf",
           "/etc/mime.types"]


class Sandbox:
    """One box for one submission: ``command(argv)`` wraps the kernel's command line; ``close()`` ends everything
    in the box and returns what the limits saw (``{"oom": bool, "process_limit": bool}``)."""

    HOME = "/home/student"

    def __init__(self, isolation: Isolation, limits: Limits, private: Path, work: Path, exchange: Path,
                 threads: int = 1, data: list[Path] | None = None, requests: Path | None = None):
        self.isolation, self.limits = isolation, limits
        self.data = list(data or [])  # files the exercise hands out, read-only in the working folder
        self.requests = requests      # the grader's requests to the kernel: read-only in the box
        self.private, self.work, self.exchange = private, work, exchange
        self.threads = threads
        self.cgroups: dict[str, Path] = {}
        self._final: dict[str, bool] | None = None
        if isolation.cgroup == "cgroup v1":
            name = f"course-grade-{uuid.uuid4().hex[:12]}"
            for c in ("memory", "pids"):
                d = Path("/sys/fs/cgroup") / c / name
                d.mkdir()
                self.cgroups[c] = d
            mem = limits.memory_mb * 2**20
            (self.cgroups["memory"] / "memory.limit_in_bytes").write_text(str(mem))
            swap = self.cgroups["memory"] / "memory.memsw.limit_in_bytes"
            if swap.exists():
                try:
                    swap.write_text(str(mem))
                except OSError:
                    pass
            (self.cgroups["pids"] / "pids.max").write_text(str(limits.processes))

    # -------------------------------------------------------------------------------------------------------
    def _rlimits(self) -> dict[str, int]:
        mb = 2**20
        rl = {"fsize": self.limits.file_mb * mb, "nofile": self.limits.open_files, "core": 0,
              # with a whole-box memory limit the address-space limit is only a backstop (torch reserves more
              # address space than it uses)
              "as": self.limits.memory_mb * mb * (2 if self.cgroups else 1)}
        if not self.cgroups and os.geteuid() != 0:
            try:
                import psutil

                mine = sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == os.getuid())
            except Exception:  # noqa: BLE001
                mine = 0
            rl["nproc"] = mine + self.limits.processes  # RLIMIT_NPROC counts all of this user's processes
        return rl

    def _env(self) -> dict[str, str]:
        return {
            "HOME": self.HOME, "USER": "student", "LOGNAME": "student", "LANG": "C.UTF-8",
            "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/matplotlib", "TQDM_DISABLE": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1", "IPYTHONDIR": "/tmp/ipython", "JUPYTER_RUNTIME_DIR": "/tmp/jupyter",
            "JUPYTER_CONFIG_DIR": "/tmp/jupyter-config", "JUPYTER_PLATFORM_DIRS": "1",
            "COURSE_THREADS": str(self.threads), "OMP_NUM_THREADS": str(self.threads), "COURSE_DEVICE": "cpu",
        }

    def command(self, argv: list[str]) -> list[str]:
        """The full command line that starts ``argv`` (the kernel) in this box."""
        if self.isolation.kind == "none":
            for f in self.data:
                shutil.copy(f, self.work / f.name)
            inner, cwd = argv, str(self.work)
        else:
            etc = self.private / "etc"
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "passwd").write_text(f"student:x:1000:1000:student:{self.HOME}:/bin/sh\n")
            (etc / "group").write_text("student:x:1000:\n")
            (etc / "hosts").write_text("127.0.0.1 localhost\n")
            inner = [_bwrap() or "bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                     "--uid", "1000", "--gid", "1000", "--hostname", "sandbox"]
            for p in _SYSTEM:
                if os.path.lexists(p):
                    inner += ["--ro-bind", p, p]
            for name in ("passwd", "group", "hosts"):
                inner += ["--ro-bind", str(etc / name), f"/etc/{name}"]
            # everything the kernel may write is a tmpfs (charged to the box's memory) but the exchange folder
            size = ["--size", str(self.limits.memory_mb * 2**20)] if self.isolation.sized_tmpfs else []
            inner += ["--proc", "/proc", "--dev", "/dev", *size, "--tmpfs", "/tmp", *size, "--tmpfs", "/home",
                      *size, "--tmpfs", f"{self.HOME}/work"]  # each at most the memory limit (where bwrap can say so)
            # Python, the venv and the package after the tmpfs folders: a checkout under /home or /tmp stays visible
            for p in _python_paths():
                inner += ["--ro-bind", str(p), str(p)]
            for f in self.data:
                inner += ["--ro-bind", str(f), f"{self.HOME}/work/{f.name}"]
            inner += ["--bind", str(self.exchange), str(self.exchange)]
            if self.requests is not None:
                inner += ["--ro-bind", str(self.requests), str(self.requests)]
            inner += ["--chdir", f"{self.HOME}/work", "--clearenv"]
            for k, v in self._env().items():
                inner += ["--setenv", k, v]
            inner += ["--", *argv]
            cwd = "/"
        spec = {"rlimits": self._rlimits(), "cgroups": [str(d / "cgroup.procs") for d in self.cgroups.values()],
                "argv": inner, "cwd": cwd}
        return [sys.executable, "-I", str(_LAUNCH), json.dumps(spec)]

    def env_for_unsandboxed(self) -> dict[str, str]:
        """The environment of an unsandboxed kernel (bubblewrap sets its own)."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "SYSTEMROOT", "TMP", "TEMP")}
        env.update({k: v for k, v in self._env().items() if k not in ("HOME", "PATH", "USER", "LOGNAME",
                                                                       "MPLCONFIGDIR", "IPYTHONDIR",
                                                                       "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR")})
        return env

    # -------------------------------------------------------------------------------------------------------
    def facts(self) -> dict[str, bool]:
        """What the limits saw so far (after :meth:`close`, what they saw at the end)."""
        if self._final is not None:
            return dict(self._final)
        out = {"oom": False, "process_limit": False}
        mem = self.cgroups.get("memory")
        if mem is not None:
            try:
                control = (mem / "memory.oom_control").read_text().split()
                kills = int(control[control.index("oom_kill") + 1]) if "oom_kill" in control else 0
                out["oom"] = kills > 0 or int((mem / "memory.failcnt").read_text() or 0) > 0
            except (OSError, ValueError, IndexError):
                pass
        pids = self.cgroups.get("pids")
        if pids is not None:
            try:
                events = (pids / "pids.events").read_text().split()
                out["process_limit"] = len(events) >= 2 and int(events[1]) > 0
            except (OSError, ValueError, IndexError):
                pass
        return out

    def close(self) -> dict[str, bool]:
        """End every process in the box (the PID namespace already ends with the kernel; the control groups make
        sure), then remove the control groups. Safe to call twice, from any thread."""
        if self._final is not None:
            return dict(self._final)
        facts = self.facts()
        for d in self.cgroups.values():
            for _ in range(50):
                try:
                    pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.05)
        for d in self.cgroups.values():
            for _ in range(40):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
        self._final = facts
        self.cgroups = {}
        return facts
