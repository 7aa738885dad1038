"""Grade one submission: ``python -m course_utils.course.grade_worker JOB.json`` (started by ``course grade``).

This process never runs the student's code and never reads anything of theirs but JSON messages and the safe wire
format. It

1. builds the notebook to run: the student's answer cells between the *student* version of every locked cell
   (the exercise's, so no hidden test enters the box), with deleted locked cells put back;
2. runs it in the sandboxed kernel (:mod:`~course_utils.course.sandbox`), cell by cell, with a cell and a notebook
   time limit and an output limit: this is the student's feedback, and it scores nothing;
3. runs the hidden tests of the instructor's source *here*, where ``student.name(...)`` is a call into the kernel
   (:mod:`~course_utils.course.rpc`): a task's points are earned only when its hidden tests pass here;
4. writes ``result.json`` (status, scores, what failed) and the executed notebook.

The status comes from what happened (the kernel's exit, nbclient's exceptions, the box's limits), never from text
the student's code printed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import nbformat

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


def hidden_source(cell_source: str) -> str:
    """The lines between the hidden-test markers of a check cell (joined, markers dropped)."""
    lines, inside, out = cell_source.splitlines(), False, []
    for line in lines:
        if HIDDEN_BEGIN in line:
            inside = True
        elif HIDDEN_END in line:
            inside = False
        elif inside:
            out.append(line)
    return "\n".join(out)


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def autograded_cells(nb) -> list:
    return [c for c in nb.cells if _meta(c).get("grade") and not _meta(c).get("solution")]


def load_hidden_tests(source_nb) -> tuple[dict, dict[str, list]]:
    """Run the instructor's locked non-graded code cells (setup, data) and collect every check cell's hidden tests,
    in this process. Returns (namespace, {grade_id: [test functions]})."""
    from course_utils import checks

    ns: dict[str, Any] = {"__name__": "__hidden__"}
    tests: dict[str, list] = {}
    for cell in source_nb.cells:
        m = _meta(cell)
        if cell.cell_type != "code":
            continue
        if m.get("locked") and not m.get("grade") and not m.get("solution"):
            exec(compile(cell.source, f"<{m.get('grade_id', 'cell')}>", "exec"), ns)  # noqa: S102 - instructor's code
        elif m.get("grade") and not m.get("solution"):
            checks._HIDDEN_REGISTRY = []
            try:
                exec(compile(hidden_source(cell.source), f"<hidden tests of {m['grade_id']}>", "exec"), ns)  # noqa: S102
                tests[m["grade_id"]] = list(checks._HIDDEN_REGISTRY)
            finally:
                checks._HIDDEN_REGISTRY = None
    return ns, tests


def sanitize(submission, release) -> tuple[Any, list[str]]:
    """The notebook to run: each locked cell as the exercise has it (the student cannot change a check, and no hidden
    test is in it), each answer cell with the student's source, the student's own extra cells without nbgrader
    metadata, and deleted locked cells put back in place. Returns (notebook, grade ids of restored grade cells)."""
    release_ids = [_meta(c).get("grade_id") for c in release.cells]
    by_id = {_meta(c).get("grade_id"): c for c in release.cells if _meta(c).get("grade_id")}
    out, seen = [], set()
    for cell in submission.cells:
        gid = _meta(cell).get("grade_id")
        if gid in by_id and gid not in seen:
            seen.add(gid)
            new = copy.deepcopy(by_id[gid])
            if not _meta(new).get("locked"):
                new.source = cell.get("source", "")
        else:
            kind = cell.get("cell_type") if cell.get("cell_type") in ("code", "markdown", "raw") else "raw"
            new = getattr(nbformat.v4, f"new_{kind}_cell")(cell.get("source", ""))
        out.append(new)
    restored = []
    for i, gid in enumerate(release_ids):
        if gid is None or gid in seen:
            continue
        # after the nearest earlier release cell that is present
        pos = 0
        for prev in reversed(release_ids[:i]):
            idx = next((k for k, c in enumerate(out) if _meta(c).get("grade_id") == prev), None)
            if idx is not None:
                pos = idx + 1
                break
        out.insert(pos, copy.deepcopy(by_id[gid]))
        seen.add(gid)
        if _meta(by_id[gid]).get("grade"):
            restored.append(gid)
    nb = nbformat.v4.new_notebook(metadata=copy.deepcopy(release.metadata))
    used = set()
    for i, cell in enumerate(out):
        gid = _meta(cell).get("grade_id")
        cid = by_id[gid].get("id") if gid in by_id and by_id[gid].get("id") else f"student-{i:03d}"
        cell["id"] = cid if cid not in used else f"student-{i:03d}"
        used.add(cell["id"])
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells = out
    return nb, restored


_SAFE_MIME = ("text/plain", "image/png", "image/jpeg")


def safe_for_instructor(nb):
    """The graded notebook as the instructor will see it (in the formgrader, in a browser, with their rights): no
    script or markup of the student's can run there. Outputs keep plain text and PNG/JPEG pictures only (no HTML,
    JavaScript, SVG or widget views); the student's markdown (written answers, their own cells) and raw cells are
    shown as text, with ``<`` and ``>`` escaped; attachments are dropped."""
    for cell in nb.cells:
        meta = _meta(cell)
        if cell.cell_type == "code":
            kept = []
            for out in cell.get("outputs", []):
                if out.get("output_type") in ("display_data", "execute_result"):
                    out["data"] = {k: v for k, v in out.get("data", {}).items() if k in _SAFE_MIME}
                    out["metadata"] = {}
                    if not out["data"]:
                        continue
                kept.append(out)
            cell.outputs = kept
        elif not meta.get("locked"):  # the student's text
            text = cell.get("source", "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            new = nbformat.v4.new_markdown_cell(text)
            new["id"], new["metadata"] = cell.get("id"), cell.get("metadata", {})
            cell.clear()
            cell.update(new)
    return nb


def _content_size(v: Any, budget: int = 10**9) -> int:
    """Characters of text in a message's content (a bounded walk)."""
    if isinstance(v, str):
        return len(v)
    if isinstance(v, dict):
        return sum(_content_size(x) for x in v.values())
    if isinstance(v, list):
        return sum(_content_size(x) for x in v)
    return 8


def run(job: dict) -> dict:
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    import zmq

    from course_utils import checks
    from course_utils.course import rpc, wire
    from course_utils.course.sandbox import Isolation, Limits, Sandbox

    t0 = time.monotonic()
    deadline = t0 + job["notebook_timeout"]
    out_dir = Path(job["out_dir"])
    source_nb = nbformat.read(job["source"], as_version=4)
    release_nb = nbformat.read(job["release"], as_version=4)
    tasks = [_meta(c)["grade_id"] for c in autograded_cells(source_nb)]
    result: dict[str, Any] = {"status": "graded", "detail": "", "scores": {t: None for t in tasks}, "messages": {},
                              "restored": [], "timed_out_cells": []}

    _, hidden = load_hidden_tests(source_nb)  # before any student code runs anywhere
    missing_tests = [t for t in tasks if not hidden.get(t)]
    if missing_tests:
        raise RuntimeError(f"the homework source has no hidden test (@hidden_test) for {', '.join(missing_tests)}")

    submission = nbformat.read(job["submission"], as_version=4)
    nb, result["restored"] = sanitize(submission, release_nb)

    limits = Limits(**job["limits"])
    isolation = Isolation(**job["isolation"])
    private, work, exchange = Path(job["private"]), Path(job["work"]), Path(job["exchange"])
    requests, answers = private / "req", exchange / "out"   # the box reads the first and writes the second
    for d in (private, work, exchange, requests, answers):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
    # Everything in the exchange folder is the kernel's to change (it may put links there, to anywhere on this
    # machine): the grader reads answers only through this handle of the folder, opened before the kernel starts,
    # and never follows a link; requests go to a folder the box can only read.
    answers_fd = os.open(answers, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
    box = Sandbox(isolation, limits, private, work, exchange, threads=job["threads"],
                  data=[Path(f) for f in job.get("data", [])], requests=requests)
    max_msg = int(max(limits.output_mb * 2**20 * 4, 256 * 2**20))

    class BoxedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return box.command([sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file])

    transport = "ipc" if os.name == "posix" else "tcp"
    km = BoxedKernelManager(transport=transport, ip=str(exchange / "k") if transport == "ipc" else "127.0.0.1")
    km.connection_file = str(exchange / "kernel.json")
    km._kernel_spec = KernelSpec(argv=["python"], display_name="sandboxed Python", language="python",
                                 interrupt_mode="message", env={}, resource_dir="")
    km.context.setsockopt(zmq.MAXMSGSIZE, max_msg)

    output_cap = int(limits.output_mb * 2**20)
    state = {"output": 0, "overflow": False, "killed_for_time": False, "stubborn": None}

    class GradingClient(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):
            size = _content_size(msg.get("content", {}))
            state["output"] += size
            if state["output"] > output_cap:
                state["overflow"] = True
                return None
            return super().output(outs, msg, display_id, cell_index)

        async def _async_handle_timeout(self, timeout, cell=None):
            cid = cell.get("id") if cell is not None else None
            if cid in result["timed_out_cells"]:  # interrupted once, still running
                state["stubborn"] = cid
                raise CellTimeoutError.error_from_timeout_and_cell("did not stop when interrupted", timeout, cell)
            result["timed_out_cells"].append(cid)
            return await super()._async_handle_timeout(timeout, cell)

    log_tail = _Tail(out_dir / "kernel.log")  # the kernel's own stdout/stderr: only the last 64 KB are kept
    env = box.env_for_unsandboxed() if isolation.kind == "none" else {"PATH": os.environ.get("PATH", "")}
    pid = None

    def kill_box():
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return box.close()

    def watchdog():
        while time.monotonic() < deadline:
            if done.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic()))):
                return
        state["killed_for_time"] = True
        kill_box()

    def alive() -> bool:
        try:
            return bool(run_sync(km.is_alive)())
        except Exception:  # noqa: BLE001
            return False

    done = threading.Event()
    threading.Thread(target=watchdog, daemon=True).start()
    kernel_dead, dead_in = False, None
    try:
        run_sync(km.start_kernel)(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=str(work))
        pid = km.provisioner.pid if km.provisioner is not None else None
        log_tail.follow(km.provisioner.process.stdout)
        client = GradingClient(nb, km=km, timeout=job["cell_timeout"], interrupt_on_timeout=True, allow_errors=True,
                               startup_timeout=60, iopub_timeout=4, raise_on_iopub_timeout=False,
                               record_timing=False)
        client.start_new_kernel_client()
        try:
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if time.monotonic() > deadline:
                    raise DeadKernelError("past the notebook limit")
                client.execute_cell(cell, index)
        except (DeadKernelError, CellTimeoutError):
            kernel_dead, dead_in = True, "notebook"
        except Exception as err:  # noqa: BLE001 - a kernel that breaks the protocol
            kernel_dead, dead_in = True, "notebook"
            state["protocol"] = f"{type(err).__name__}: {str(err)[:200]}"

        # ---- the hidden tests, here, calling into the kernel ----------------------------------------------------
        # (through the notebook's own client, connected before any of the student's code ran)
        if not kernel_dead and not state["killed_for_time"]:
            kc = client.kc
            counter = {"n": 0}

            def send(request: dict) -> Any:
                counter["n"] += 1
                n = counter["n"]
                name = f"{n}.out"
                try:
                    os.unlink(name, dir_fd=answers_fd)  # an answer planted in advance is not the answer
                except FileNotFoundError:
                    pass
                except OSError:
                    raise rpc.RpcFailure("the kernel put something the grader cannot remove where its answer goes") from None
                fd = os.open(requests / f"{n}.in", os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(wire.dumps(request))
                code = (f"__import__('course_utils.course.rpc', fromlist=['serve'])"
                        f".serve({str(requests)!r}, {str(answers)!r}, {n})")
                budget = min(job["cell_timeout"], deadline - time.monotonic())
                if budget <= 0:
                    raise _Lost("the notebook limit passed during the hidden checks")
                try:
                    run_sync(kc.execute_interactive)(code, silent=True, store_history=False, timeout=budget,
                                                     output_hook=lambda msg: None, allow_stdin=False)
                except TimeoutError:
                    if not alive():
                        raise _Lost("the kernel died during a hidden check") from None
                    raise _Lost(f"the student's code ran past the {job['cell_timeout']} s limit in a hidden check") from None
                except Exception as err:  # noqa: BLE001
                    if not alive():
                        raise _Lost("the kernel died during a hidden check") from None
                    raise rpc.RpcFailure(f"the kernel did not answer the grader ({type(err).__name__})") from None
                data = _read_answer(answers_fd, name, max_msg)
                if data is None:
                    if not alive():
                        raise _Lost("the kernel died during a hidden check")
                    raise rpc.RpcFailure("the kernel wrote no answer to the grader's call (was the call blocked?)")
                try:
                    return wire.loads(data, max_bytes=max_msg)
                except wire.WireError as err:
                    raise rpc.RpcFailure(f"the answer to the grader's call is not valid ({err})") from None

            student = rpc.Remote(send)
            for task in tasks:
                points_ok, message = True, ""
                for fn in hidden[task]:
                    try:
                        fn(student)
                    except _Lost as err:
                        points_ok, message = False, str(err)
                        if not alive():
                            kernel_dead, dead_in = True, "hidden"
                        break
                    except checks.CheckFailed as err:
                        points_ok, message = False, str(err)
                    except NotImplementedError:
                        points_ok, message = False, "not implemented"
                    except rpc.StudentError as err:
                        points_ok, message = False, f"your code raised {err}"
                    except rpc.RpcFailure as err:
                        points_ok, message = False, str(err)
                    except AssertionError as err:
                        points_ok, message = False, f"a hidden check failed: {err}"
                    except Exception as err:  # noqa: BLE001 - an answer of the wrong kind breaks a check
                        points_ok, message = False, f"{type(err).__name__}: {str(err)[:300]}"
                    if not points_ok:
                        break
                result["scores"][task] = job["points"][task] if points_ok else 0.0
                if message:
                    result["messages"][task] = message[:500]
                if kernel_dead or state["killed_for_time"]:
                    break
                if message.startswith("the student's code ran past"):  # still busy: interrupt it before going on
                    run_sync(km.interrupt_kernel)()
    except Exception as err:  # noqa: BLE001 - the kernel did not start, or the grader failed
        if not state["killed_for_time"]:
            result["status"] = "grader error"
            result["detail"] = f"{type(err).__name__}: {str(err)[:300]}"
            result["kernel_started"] = pid is not None
    finally:
        done.set()
        try:
            run_sync(km.shutdown_kernel)(now=True)
        except Exception:  # noqa: BLE001
            pass
        facts = kill_box()
        log_tail.close()
        os.close(answers_fd)
        try:
            client.kc.stop_channels()
        except Exception:  # noqa: BLE001 - no client yet, or already closed
            pass

    # ---- the status, from what happened ---------------------------------------------------------------------------
    no_scores = {t: None for t in tasks}
    if result["status"] == "grader error":
        result["scores"] = no_scores
        last = [ln for ln in _read_tail(out_dir / "kernel.log").splitlines() if ln.strip()]
        if last:  # e.g. why the box did not start
            result["detail"] += f" (the kernel's last words: {last[-1][:200]})"
    elif state["killed_for_time"]:
        result["status"], result["detail"] = "timeout", f"the notebook ran past the {job['notebook_timeout']} s notebook limit"
        result["scores"] = no_scores
    elif facts.get("oom"):
        result["status"] = "out of memory"
        result["detail"] = f"the kernel used more than the {limits.memory_mb} MB memory limit and was stopped"
        result["scores"] = no_scores
    elif state["stubborn"] is not None:
        result["status"] = "timeout"
        result["detail"] = (f"cell {state['stubborn']} ran past the {job['cell_timeout']} s cell limit and did not stop "
                            "when interrupted")
        result["scores"] = no_scores
    elif dead_in == "notebook":
        result["status"] = "kernel died"
        result["detail"] = (f"the kernel broke the messaging protocol ({state['protocol']})" if state.get("protocol")
                            else "the kernel crashed or was killed while running the notebook")
        result["scores"] = no_scores
    elif dead_in == "hidden":
        result["status"] = "kernel died"
        result["detail"] = "the kernel died during the hidden checks; the tasks not yet checked score 0"
        result["scores"] = {t: (0.0 if v is None else v) for t, v in result["scores"].items()}
    else:
        notes = []
        if result["timed_out_cells"]:
            result["status"] = "timeout"
            notes.append(f"cell(s) {', '.join(map(str, result['timed_out_cells']))} ran past the {job['cell_timeout']} s "
                         "cell limit and were interrupted; the rest was graded")
        if state["overflow"]:
            result["status"] = "output too large" if result["status"] == "graded" else result["status"]
            notes.append(f"the notebook printed more than {limits.output_mb:g} MB; the rest of its output was dropped")
        if result["restored"]:
            result["status"] = "cells restored" if result["status"] == "graded" else result["status"]
            notes.append(f"deleted grade cells were put back: {', '.join(result['restored'])}")
        result["detail"] = "; ".join(notes)
    if facts.get("process_limit"):
        result["detail"] = (result["detail"] + "; " if result["detail"] else "") + \
            f"the code hit the {limits.processes}-process limit"
    result["seconds"] = round(time.monotonic() - t0, 2)
    result["output_chars"] = state["output"]

    # the executed notebook (outputs as the grader recorded them), for feedback and the formgrader
    nbformat.write(safe_for_instructor(nb), out_dir / "graded.ipynb")
    return result


def _read_answer(folder_fd: int, name: str, max_bytes: int) -> bytes | None:
    """The bytes of a plain file ``name`` in the folder, at most ``max_bytes`` (None if there is none); never through a
    link, never blocking on a pipe or a device."""
    import stat

    from course_utils.course.rpc import RpcFailure

    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0), dir_fd=folder_fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise RpcFailure(f"the answer to the grader's call is not a plain file ({err.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RpcFailure("the answer to the grader's call is not a plain file")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise RpcFailure("the answer to the grader's call is too large")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return ""


class _Tail:
    """Keep the last ``keep`` bytes of a stream (read in a thread), written to ``path`` at the end: a kernel that
    prints gigabytes to its stderr fills neither the grader's memory nor its disk."""

    def __init__(self, path: Path, keep: int = 64 * 1024):
        self.path, self.keep, self.buf, self.thread = path, keep, bytearray(), None

    def follow(self, stream) -> None:
        def pump():
            try:
                for chunk in iter(lambda: stream.read1(65536), b""):
                    self.buf += chunk
                    if len(self.buf) > 2 * self.keep:
                        del self.buf[:-self.keep]
            except (OSError, ValueError):
                pass

        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.path.write_bytes(bytes(self.buf[-self.keep:]))


class _Lost(Exception):
    """The kernel is gone or out of time: the grading of this submission stops here."""

    grading_failure = True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    out = Path(job["out_dir"]) / "result.json"
    try:
        result = run(job)
    except Exception as err:  # noqa: BLE001 - reported as a row, never a lost batch
        result = {"status": "grader error", "detail": f"{type(err).__name__}: {str(err)[:300]}",
                  "scores": {}, "messages": {}, "trace": traceback.format_exc()[-3000:]}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
