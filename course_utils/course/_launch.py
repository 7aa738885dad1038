"""Start a command with the grading sandbox's limits: run as ``python -I _launch.py SPEC_JSON``.

It sets the resource limits, joins the control groups, then replaces itself with the command (bubblewrap, which
starts the student's kernel). It is a script, not a module of the package, so that it starts in milliseconds
without importing torch; it uses the standard library only.
"""

import ctypes
import json
import os
import signal
import sys

try:
    import resource

    _RLIMITS = {"as": resource.RLIMIT_AS, "nproc": resource.RLIMIT_NPROC, "fsize": resource.RLIMIT_FSIZE,
                "nofile": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE}
except ImportError:  # Windows: no rlimits (and no sandbox: `course grade --unsandboxed` says so in every row)
    resource, _RLIMITS = None, {}


def main() -> None:
    spec = json.loads(sys.argv[1])
    for name, value in spec.get("rlimits", {}).items():
        if name not in _RLIMITS:
            continue
        soft, hard = resource.getrlimit(_RLIMITS[name])
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(_RLIMITS[name], (value, value))
    for procs in spec.get("cgroups", []):
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))
    if sys.platform.startswith("linux"):  # if the grader's process dies, so does the box (survives the exec)
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the file-size limit fails; it does not kill
    os.chdir(spec.get("cwd", "/"))
    os.execvp(spec["argv"][0], spec["argv"])


if __name__ == "__main__":
    main()
