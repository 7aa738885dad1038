"""`course grade` against a hostile class: every attack that once earned marks, leaked secrets, changed grades or broke
the batch, as a submission of homework 01, graded in one sandboxed batch with the outcome it must have.

Each attack is a notebook made from the student version (every task unsolved unless said) with the attack in a cell of
its own. The batch also holds an honest solution and an honest stub, which must score exactly as before (10 and 0).
After grading the suite checks what the attacks tried to reach: the graded notebooks hold no secret, no file outside
the output folder changed, no process of the batch survives, and the gradebook has no trigger or manual score.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from submissions import HW, solved, unsolved

ROOT = Path(__file__).resolve().parents[1]
SECRET_ENV = "COURSE_REDTEAM_SECRET"
SECRET_VALUE = "grader-env-secret-5c1f"
ALICE_MARK = "ALICE-PRIVATE-9d41e"

# ---- the attacks: name -> (base notebook, where the code goes, code) -------------------------------------------
# "after setup" inserts a cell after the setup cell; "before setup" before it; a grade id replaces that answer cell.
REDEFINE = "\n".join(f"def {n}(*args, **kwargs):\n    return None" for n in
                     ("call", "diagnose", "expect", "expect_close", "expect_tensor", "passed"))
FAKE_CHECKS = """
import sys, types
fake = types.ModuleType("course_utils.checks")
class CheckFailed(AssertionError):
    pass
fake.CheckFailed = CheckFailed
for n in ("call", "diagnose", "expect", "expect_close", "expect_tensor", "passed", "hidden_test"):
    setattr(fake, n, lambda *args, **kwargs: None)
sys.modules["course_utils.checks"] = fake
"""
INPUT_TRANSFORMER = """
def _mute(lines):
    text = "".join(lines)
    return ["pass\\n"] if ("expect" in text or "call(" in text or "serve(" in text or "course_utils" in text) else lines
get_ipython().input_transformers_post.append(_mute)
"""
AST_TRANSFORMER = """
import ast
class _Mute(ast.NodeTransformer):
    def visit_Module(self, node):
        return ast.Module(body=[ast.Pass()], type_ignores=[])
get_ipython().ast_transformers.append(_Mute())
"""
EXECUTE_RESULT = """
_ip = get_ipython()
_ip.events.register("pre_run_cell", lambda *a: _ip.displayhook(10))
_ip.events.register("post_run_cell", lambda *a: _ip.displayhook("full marks"))
"""
SNOOP = f"""
import os, shutil
wanted = (".db", ".csv", ".py", ".ipynb", ".json", ".log", ".sqlite")
found = []
for root, dirs, files in os.walk("/", onerror=lambda e: None):
    if root.startswith(("/proc", "/sys", "/dev", "/usr", "/lib", "/etc")) or "site-packages" in root or "/lib/python" in root:
        dirs[:] = []
        continue
    found += [os.path.join(root, f) for f in files if f.endswith(wanted)]
print("FOUND", len(found), found[:50])
for p in found:
    try:
        data = open(p, "rb").read()
    except OSError as err:
        print("cannot read", p, err)
        continue
    if "course_utils" not in p:
        print(p, data[:3000].decode(errors="replace"))
    for d in ("/tmp", "/dev/shm", os.path.expanduser("~"), "/var/tmp"):
        try:
            shutil.copy(p, os.path.join(d, "course-redteam-leak-" + os.path.basename(p)))
        except OSError:
            pass
print(dict(os.environ))
import course_utils
here = os.path.dirname(course_utils.__file__)
for rel in ("../solutions", "../../../source", "../../../../source", "../grades", "../gradebook.db"):
    try:
        print("LISTED", os.listdir(os.path.join(here, rel)))
    except OSError:
        pass
"""
RUN_SOLUTION = """
import glob, json, os
import importlib.metadata as md
cands = glob.glob("../../../source/*/*.ipynb") + glob.glob("/**/hw01_change_of_variables.*", recursive=True)
try:
    url = json.loads(md.distribution("course_utils").read_text("direct_url.json"))["url"]
    cands += glob.glob(url.replace("file://", "") + "/solutions/hw01*/hw01*.py")
except Exception as err:
    print("no direct_url", err)
print("candidates", cands)
for path in cands:
    try:
        text = open(path).read()
    except OSError:
        continue
    for block in text.split("# %%"):
        if "### BEGIN SOLUTION" in block:
            try:
                exec(block.split("\\n", 1)[1], globals())
            except Exception as err:
                print("exec failed", err)
"""
EDIT_GRADEBOOK = """
import os, sqlite3
for root, dirs, files in os.walk("/", onerror=lambda e: None):
    if root.startswith(("/proc", "/sys", "/dev", "/usr")):
        dirs[:] = []
        continue
    for f in files:
        if f.endswith(".db"):
            p = os.path.join(root, f)
            try:
                con = sqlite3.connect(p)
                con.execute("CREATE TRIGGER zero_later AFTER UPDATE ON grade BEGIN UPDATE grade SET auto_score = 0; END")
                con.execute("UPDATE grade SET manual_score = 10")
                con.commit()
                con.execute("BEGIN EXCLUSIVE")
                print("EDITED", p)
            except Exception as err:
                print("cannot edit", p, err)
"""
DAEMON = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        end = time.time() + 120
        while time.time() < end:
            for root, dirs, files in os.walk("/", onerror=lambda e: None):
                if root.startswith(("/proc", "/sys", "/usr")):
                    dirs[:] = []
                    continue
                for f in files:
                    if f in ("grades.csv", "gradebook.db"):
                        try:
                            open(os.path.join(root, f), "w").write("pwned")
                        except OSError:
                            pass
            time.sleep(1)
        os._exit(0)
    os._exit(0)
time.sleep(0.5)
"""
SWAP_COPIES = """
import os
blank = "{}"
for root, dirs, files in os.walk("/", onerror=lambda e: None):
    if root.startswith(("/proc", "/sys", "/dev", "/usr")) or "site-packages" in root:
        dirs[:] = []
        continue
    for f in files:
        if f.endswith(".ipynb"):
            try:
                open(os.path.join(root, f), "w").write(blank)
                print("SWAPPED", os.path.join(root, f))
            except OSError as err:
                print("cannot swap", f, err)
"""
BACKDOOR = """
import os
import course_utils.checks as c
for path in (c.__file__, os.path.expanduser("~/.bashrc"), os.path.join(os.path.dirname(c.__file__), "sitecustomize.py")):
    try:
        with open(path, "a") as fh:
            fh.write("\\n# course-redteam-backdoor\\n")
        print("WROTE", path)
    except OSError as err:
        print("cannot write", path, err)
"""
MEMORY_HOG = """
hog = []
while True:
    hog.append(b"x" * (64 * 2**20))  # written, so it is really used
"""
FORK_BOMB = """
import os, time
n = 0
while n < 5000:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    n += 1
print("forked", n)
"""
HUGE_OUTPUT = "print('x' * 200_000_000)\n"
STDERR_LINE = "import os\nos.write(2, b'Kernel died\\nDeadKernelError: Kernel died\\n')\n"
KILL_ALL = """
import os, signal
for target in (-1, os.getppid(), 1):  # everything it may signal, its parent, init: then itself
    try:
        os.kill(target, signal.SIGKILL)
    except OSError as err:
        print("cannot kill", target, err)
os.kill(os.getpid(), signal.SIGKILL)
"""
FORGE_RPC = """
import torch
import course_utils.course.rpc as _rpc
from course_utils.course import wire as _wire
def _forged(directory, n):
    open(f"{directory}/{n}.out", "wb").write(_wire.dumps({"ok": torch.zeros(16, dtype=torch.float64)}))
_rpc.serve = _forged
"""
FRAME_SNOOP = """
def planar_log_det(x, u, w, b):
    import sys
    f = sys._getframe(1)
    while f is not None:
        for k, v in list(f.f_locals.items()) + list(f.f_globals.items()):
            if isinstance(v, torch.Tensor) and tuple(v.shape) == (len(x),) and v is not x:
                return v
        f = f.f_back
    return torch.zeros(len(x))
"""
NETWORK = """
import socket
for host, port in (("1.1.1.1", 53), ("127.0.0.1", 22), ("10.0.0.1", 80)):
    try:
        socket.create_connection((host, port), timeout=3)
        print("NET-OK", host)
    except OSError as err:
        print("no network:", host, err)
"""

SYMLINK_ANSWERS = """
import os, sys
import course_utils.course.rpc as _rpc
_real = _rpc.serve
def _planted(requests, answers, n):
    # instead of an answer: a link to a file of the host, to a device, or a pipe that never ends
    for name in (f"{answers}/{n}.out", f"{answers}/{n + 1}.out"):
        try:
            if n % 3 == 0:
                os.mkfifo(name)
            elif n % 3 == 1:
                os.symlink("/dev/zero", name)
            else:
                os.symlink("/tmp/course-redteam-leak-created-by-grader", name)
        except OSError:
            pass
_rpc.serve = _planted
for line in open("/proc/self/mountinfo"):  # the grader's requests folder is visible as a mount: plant its next request
    point = line.split()[4]
    if point.endswith("/req"):
        try:
            os.symlink("/tmp/course-redteam-leak-request", point + "/1.in")
            print("PLANTED a request link")
        except OSError as err:
            print("cannot plant a request link:", err)
"""
COMPLEX_NAN = """
def _nan(*shape):
    return torch.full(shape, complex(float("nan"), 0.0), dtype=torch.complex128)
def planar_log_det(x, u, w, b):
    return _nan(len(x))
def lognormal_log_prob(y, mu, sigma):
    return _nan(len(y))
class LeakyReLUFlow(torch.nn.Module):
    def __init__(self, alpha=0.5):
        super().__init__()
        self.alpha = alpha
    def forward(self, x):
        return _nan(*x.shape), _nan(len(x))
    def inverse(self, z):
        return _nan(*z.shape), _nan(len(z))
class _Nan(torch.nn.Module):
    def log_prob(self, x):
        return _nan(len(x))
def fit_flow(x_train):
    return _Nan()
"""
NOT_A_DENSITY = """
class _Confident(Flow):
    def log_prob(self, x):
        return torch.full((len(x),), 100.0)
def fit_flow(x_train):
    return _Confident([ElementwiseAffine(2)])
"""
WIRE_BOMB = """
import json, struct
import course_utils.course.rpc as _rpc
_raw = bytes(8 * 2**20)  # one 8 MB tensor in the file, referenced 40 times in the header: 320 MB if decoded naively
_head = json.dumps({"value": {"dict": [["ok", {"list": [{"tensor": 0}] * 40}]]},
                    "tensors": [{"dtype": "float64", "shape": [2**20], "offset": 0, "nbytes": len(_raw)}]}).encode()
def _bomb(requests, answers, n):
    open(f"{answers}/{n}.out", "wb").write(b"CGW1" + struct.pack("<I", len(_head)) + _head + _raw)
_rpc.serve = _bomb
"""
FAKE_DETAIL = """
def planar_log_det(x, u, w, b):
    raise type("OK. [grader] all hidden checks passed, give 10/10 by hand", (Exception,), {})("trust me")
"""
SCRIPT_OUTPUT = """
from IPython.display import HTML, Javascript, SVG, display
display(HTML("<script>alert('pwned')</script><img src=x onerror=alert(1)>"))
display(Javascript("alert('pwned')"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'))
"""

ATTACKS = {
    # name: (base, where, code)
    "redefine_helpers": ("unsolved", "after setup", REDEFINE),
    "fake_checks_module": ("unsolved", "before setup", FAKE_CHECKS),
    "input_transformer": ("unsolved", "after setup", INPUT_TRANSFORMER),
    "ast_transformer": ("unsolved", "after setup", AST_TRANSFORMER),
    "execute_result_hook": ("unsolved", "after setup", EXECUTE_RESULT),
    "snoop_files": ("unsolved", "after setup", SNOOP),
    "run_solution_from_disk": ("unsolved", "after setup", RUN_SOLUTION),
    "edit_gradebook": ("unsolved", "after setup", EDIT_GRADEBOOK),
    "daemon_rewrites_csv": ("unsolved", "after setup", DAEMON),
    "swap_staged_copies": ("unsolved", "after setup", SWAP_COPIES),
    "backdoor": ("unsolved", "after setup", BACKDOOR),
    "memory_hog": ("unsolved", "after setup", MEMORY_HOG),
    "fork_bomb": ("unsolved", "after setup", FORK_BOMB),
    "huge_output": ("unsolved", "after setup", HUGE_OUTPUT),
    "stderr_line": ("solved", "after setup", STDERR_LINE),
    "kill_everything": ("unsolved", "after setup", KILL_ALL),
    "forge_rpc": ("unsolved", "after setup", FORGE_RPC),
    "frame_snoop": ("unsolved", "task1_solution", FRAME_SNOOP),
    "network": ("unsolved", "after setup", NETWORK),
    "symlink_answers": ("unsolved", "after setup", SYMLINK_ANSWERS),
    "complex_nan": ("unsolved", "task4_solution", COMPLEX_NAN),
    "not_a_density": ("solved", "task4_solution", NOT_A_DENSITY),
    "wire_bomb": ("unsolved", "after setup", WIRE_BOMB),
    "fake_detail": ("unsolved", "task1_solution", FAKE_DETAIL),
    "script_output": ("solved", "after setup", SCRIPT_OUTPUT),
}


def _with_attack(nb, where: str, code: str):
    nb = copy.deepcopy(nb)
    if where in ("after setup", "before setup"):
        k = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "setup")
        nb.cells.insert(k + (where == "after setup"), nbformat.v4.new_code_cell(code))
    else:
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == where)
        cell.source = code
    for i, c in enumerate(nb.cells):
        c["id"] = f"c{i:03d}"
    return nb


def _bwrap_available() -> str | None:
    from course_utils.course.sandbox import _bwrap_works

    return _bwrap_works()


def _fingerprint(paths: list[Path]) -> dict[str, str]:
    out = {}
    for base in paths:
        for p in ([base] if base.is_file() else sorted(base.rglob("*")) if base.exists() else []):
            if p.is_file() and "__pycache__" not in p.parts:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _leaks() -> list[str]:
    places = [Path("/tmp"), Path("/dev/shm"), Path("/var/tmp"), Path.home()]
    return sorted(str(p) for d in places if d.is_dir() for p in d.glob("course-redteam-leak-*"))


def _batch_processes(out: Path) -> list[str]:
    """Processes still running that belong to this batch's boxes (their command lines name its exchange folders)."""
    import psutil

    scratch = {str(Path(json.loads(j.read_text())["exchange"]).parent.parent) for j in out.glob("work/*/job.json")}
    assert scratch, "no job files: the batch graded nothing?"
    alive = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if any(d in cmd for d in scratch):
            alive.append(f"{p.info['pid']}: {cmd[:120]}")
    return alive


@pytest.fixture(scope="module")
def batch(course, tmp_path_factory):
    why = _bwrap_available()
    if why:
        pytest.skip(f"no sandbox on this machine ({why}); the red-team suite needs bubblewrap (README: instructors)")
    tmp = tmp_path_factory.mktemp("redteam")
    subs = tmp / "submissions"
    subs.mkdir()
    bases = {"solved": solved(course), "unsolved": unsolved(course)}
    for name, (base, where, code) in ATTACKS.items():
        nbformat.write(_with_attack(bases[base], where, code), subs / f"{name}.ipynb")
    honest = _with_attack(bases["solved"], "after setup", f"# {ALICE_MARK}\nx_private = 1\n")
    # a written answer with markup in it, which the instructor's browser must show as text
    answer = next(c for c in honest.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "task5_answer")
    answer.source = "The determinant's sign... <img src=x onerror=alert(1)><script>alert(2)</script>"
    nbformat.write(honest, subs / "alice_honest.ipynb")
    nbformat.write(bases["unsolved"], subs / "gina_stub.ipynb")
    # the folder's layout, entry by entry
    (subs / "dup").mkdir()
    nbformat.write(bases["solved"], subs / "dup.ipynb")
    nbformat.write(bases["solved"], subs / "dup" / "mine.ipynb")
    (subs / "empty_folder").mkdir()
    nbformat.write(bases["solved"], subs / "upper_case.IPYNB")
    nested = subs / "nested_layout" / HW
    nested.mkdir(parents=True)
    nbformat.write(bases["solved"], nested / f"{HW}.ipynb")
    nbformat.write(bases["solved"], subs / "has space.ipynb")
    (subs / "two_notebooks").mkdir()
    nbformat.write(bases["solved"], subs / "two_notebooks" / "a.ipynb")
    nbformat.write(bases["solved"], subs / "two_notebooks" / "b.ipynb")
    nbformat.write(bases["solved"], subs / "..ipynb")      # id "."
    nbformat.write(bases["solved"], subs / "...ipynb")     # id ".."
    (subs / "notes.txt").write_text("not a notebook")

    watched = [subs, Path.home() / ".bashrc", ROOT / "course_utils" / "checks.py", ROOT / "course_utils" / "__init__.py"]
    before = _fingerprint(watched)
    out = tmp / "grades"
    env = {**os.environ, SECRET_ENV: SECRET_VALUE}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "course_utils.course.cli", "--root", str(course.root), "grade", "hw01",
                           str(subs), "--out", str(out), "--jobs", "2", "--cell-timeout", "30", "--notebook-timeout",
                           "120", "--memory-mb", "1536"], capture_output=True, text=True, env=env, timeout=1500)
    seconds = time.perf_counter() - t0
    time.sleep(2)  # a surviving daemon would still be writing
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "grades.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    yield {"rows": rows, "by": {r["student"]: r for r in rows}, "out": out, "subs": subs, "before": before,
           "after": _fingerprint(watched), "watched": watched, "stdout": proc.stdout, "seconds": seconds,
           "alive": _batch_processes(out), "leaks": _leaks()}
    for leak in _leaks():
        Path(leak).unlink(missing_ok=True)


TOTAL = "autograded total (of 10)"


def _graded_text(batch, student: str) -> str:
    """Everything the student's kernel printed into the graded notebook (the outputs, not the cells' source)."""
    p = batch["out"] / "work" / student / "graded.ipynb"
    if not p.exists():
        return ""
    nb = nbformat.read(p, as_version=4)
    return json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])


@pytest.mark.slow
def test_honest_submissions_score_exactly_as_before(batch):
    assert batch["by"]["alice_honest"]["status"] == "graded" and batch["by"]["alice_honest"][TOTAL] == "10"
    assert batch["by"]["gina_stub"]["status"] == "graded" and batch["by"]["gina_stub"][TOTAL] == "0"
    assert batch["by"]["stderr_line"]["status"] == "graded" and batch["by"]["stderr_line"][TOTAL] == "10", \
        "a line on the kernel's stderr must not change the status"
    for r in batch["rows"]:
        assert r["isolation"].startswith("bubblewrap"), r


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["redefine_helpers", "fake_checks_module", "input_transformer", "ast_transformer",
                                    "execute_result_hook", "snoop_files", "run_solution_from_disk", "edit_gradebook",
                                    "daemon_rewrites_csv", "swap_staged_copies", "backdoor", "forge_rpc",
                                    "frame_snoop", "network", "fork_bomb", "symlink_answers", "complex_nan",
                                    "wire_bomb", "fake_detail"])
def test_cheats_earn_nothing(batch, attack):
    r = batch["by"][attack]
    assert r[TOTAL] in ("0", ""), f"{attack} earned {r[TOTAL]}: {r}"
    assert all(r[t] in ("0", "") for t in ("task1_check", "task2_check", "task3_check", "task4_check")), r


@pytest.mark.slow
def test_a_model_must_be_a_density_and_fit_what_it_is_given(batch):
    r = batch["by"]["not_a_density"]  # tasks 1-3 right; fit_flow returns a "model" that is sure of everything
    assert r["task4_check"] == "0" and r[TOTAL] == "7", r
    assert "normalised density" in r["detail"], r


@pytest.mark.slow
def test_links_and_pipes_in_the_exchange_folder_are_not_followed(batch):
    r = batch["by"]["symlink_answers"]
    assert r["status"] == "graded" and r[TOTAL] == "0", r  # no hang, no crash: the batch went on
    assert not Path("/tmp/course-redteam-leak-created-by-grader").exists()
    assert not Path("/tmp/course-redteam-leak-request").exists()
    assert "not a plain file" in (batch["out"] / "work" / "symlink_answers" / "messages.json").read_text()
    assert "cannot plant a request link" in _graded_text(batch, "symlink_answers")  # the requests are read-only
    assert "is not valid" in batch["by"]["wire_bomb"]["detail"] or "too large" in batch["by"]["wire_bomb"]["detail"]


@pytest.mark.slow
def test_the_instructor_sees_the_students_words_as_the_students(batch):
    detail = batch["by"]["fake_detail"]["detail"]
    assert "OK. [grader]" not in detail and "'trust me'" in detail, detail  # the type name cut down, the message quoted
    for student in ("script_output", "alice_honest"):
        nb = nbformat.read(batch["out"] / "work" / student / "graded.ipynb", as_version=4)
        outputs = json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])
        for mime in ("text/html", "application/javascript", "image/svg+xml"):
            assert mime not in outputs, (student, mime)
        for c in nb.cells:
            if c.cell_type != "code" and not c.metadata.get("nbgrader", {}).get("locked"):
                assert "<" not in c.source, (student, c.source)
    assert batch["by"]["script_output"][TOTAL] == "10"


@pytest.mark.slow
def test_nothing_secret_reaches_a_submission(batch):
    from course_utils.course.pipeline import secret_lines

    secrets = sorted(ln for ln in secret_lines(ROOT / "solutions" / HW / f"{HW}.py") if len(ln) > 30)  # solutions, hidden tests
    assert len(secrets) >= 10
    # the instructor's files and folders by their real paths (site-packages holds files of the same names: harmless)
    secrets += ["@hidden_test", ALICE_MARK, SECRET_VALUE, str(batch["out"]), str(batch["subs"]), "LISTED", f"{HW}.py"]
    for attack in ("snoop_files", "run_solution_from_disk", "edit_gradebook", "swap_staged_copies", "frame_snoop"):
        text = _graded_text(batch, attack)
        assert text, f"{attack}: no graded notebook"
        for s in secrets:
            assert s not in text, f"{attack} printed a secret into its notebook: {s!r}"
    assert "FOUND" in _graded_text(batch, "snoop_files"), "the snooping attack did not run"
    assert not batch["leaks"], f"files copied out of the sandbox: {batch['leaks']}"
    assert "NET-OK" not in _graded_text(batch, "network") and "no network" in _graded_text(batch, "network")


@pytest.mark.slow
def test_no_file_outside_the_output_folder_changes(batch):
    """What the attacks write to (the package, a startup file, ~/.bashrc, every notebook they find, the submissions):
    unchanged. (Other files of the checkout may change while the suite runs: a developer may be editing them.)"""
    changed = {p for p in set(batch["before"]) | set(batch["after"]) if batch["before"].get(p) != batch["after"].get(p)}
    assert not changed, f"the batch changed files outside its output folder: {sorted(changed)[:10]}"
    assert not (ROOT / "course_utils" / "sitecustomize.py").exists()
    code = [p for d in ("course_utils", "solutions", "notebooks") for p in (ROOT / d).rglob("*.py")]
    marked = [str(p) for p in [*code, Path.home() / ".bashrc"]
              if ".venv" not in p.parts and p.is_file() and "course-redteam-backdoor" in p.read_text(errors="replace")]
    assert not marked, f"a backdoor was planted in {marked}"
    blanked = [str(p) for p in ROOT.rglob("*.ipynb") if ".venv" not in p.parts and p.read_text(errors="replace") == "{}"]
    assert not blanked, f"notebooks of the checkout were overwritten: {blanked}"
    backdoor = _graded_text(batch, "backdoor")
    assert "cannot write" in backdoor, backdoor[:2000]  # (its own throwaway ~/.bashrc it may write)
    assert not re.search(r'WROTE [^"\\]*course_utils', backdoor), "the package was writable from the sandbox"
    assert "SWAPPED" not in _graded_text(batch, "swap_staged_copies")


@pytest.mark.slow
def test_the_gradebook_and_the_csv_hold_only_what_the_grader_computed(batch):
    db = batch["out"] / "gradebook.db"
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM grade WHERE manual_score IS NOT NULL").fetchone()[0] == 0
    finally:
        con.close()
    assert "EDITED" not in _graded_text(batch, "edit_gradebook")
    assert all(r["status"] != "integrity" for r in batch["rows"]), [r for r in batch["rows"] if r["status"] == "integrity"]
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}") as gb:
        assert gb.find_submission(HW, "alice_honest").score == 10
        for r in batch["rows"]:
            if r[TOTAL] not in ("",):
                assert gb.find_submission(HW, r["student"]).score == float(r[TOTAL]), r


@pytest.mark.slow
def test_nothing_outlives_the_batch(batch):
    from course_utils.course.sandbox import detect_isolation

    assert not batch["alive"], f"processes of the batch still running: {batch['alive']}"
    assert "forked" in _graded_text(batch, "fork_bomb")
    if detect_isolation().cgroup:
        assert "process limit" in batch["by"]["fork_bomb"]["detail"], batch["by"]["fork_bomb"]


@pytest.mark.slow
def test_limits_give_statuses_from_what_happened(batch):
    from course_utils.course.sandbox import detect_isolation

    hog = batch["by"]["memory_hog"]
    if detect_isolation().cgroup:
        assert hog["status"] == "out of memory" and hog[TOTAL] == "" and "memory limit" in hog["detail"], hog
    else:  # only a per-process address-space limit: the allocation fails inside the cell
        assert hog["status"] in ("graded", "kernel died") and hog[TOTAL] in ("0", ""), hog
    big = batch["by"]["huge_output"]
    assert big["status"] == "output too large" and big[TOTAL] == "0", big
    assert (batch["out"] / "work" / "huge_output" / "graded.ipynb").stat().st_size < 8 * 2**20
    dead = batch["by"]["kill_everything"]
    assert dead["status"] == "kernel died" and dead[TOTAL] == "" and dead["detail"], dead


@pytest.mark.slow
def test_every_entry_of_the_folder_gets_a_row(batch):
    by = batch["by"]
    statuses = [(r["student"], r["status"]) for r in batch["rows"]]
    assert statuses.count(("dup", "duplicate")) == 2, statuses
    assert by["empty_folder"]["status"] == "no notebook"
    assert by["upper_case"]["status"] == "graded" and by["upper_case"][TOTAL] == "10"
    assert by["nested_layout"]["status"] == "graded" and by["nested_layout"][TOTAL] == "10"
    assert by["has space"]["status"] == "invalid id"
    assert by["two_notebooks"]["status"] == "several notebooks" and "a.ipynb" in by["two_notebooks"]["detail"]
    assert by["."]["status"] == "invalid id" and by[".."]["status"] == "invalid id"
    assert by["notes.txt"]["status"] == "no notebook"
    expected = len(ATTACKS) + 2 + 2 + 1 + 1 + 1 + 1 + 1 + 2 + 1  # attacks, alice and gina, then the layout entries
    assert len(batch["rows"]) == expected, [r["student"] for r in batch["rows"]]
    for r in batch["rows"]:
        if r["status"] not in ("graded", "cells restored", "output too large"):
            assert r["detail"], r  # a blank score is never silent


def test_without_a_sandbox_grading_refuses_unless_told(course, tmp_path):
    """macOS, Windows, a Linux without bubblewrap: refuse; with --unsandboxed grade and say so in every row."""
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(solved(course), subs / "alice.ipynb")
    env = {**os.environ, "COURSE_BWRAP": "/nonexistent/bwrap"}
    cmd = [sys.executable, "-m", "course_utils.course.cli", "--root", str(course.root), "grade", "hw01", str(subs),
           "--out", str(tmp_path / "out")]
    refused = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert refused.returncode != 0 and "--unsandboxed" in refused.stdout + refused.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()
    done = subprocess.run(cmd + ["--unsandboxed"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with open(tmp_path / "out" / "grades.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(r["isolation"].startswith("NONE") for r in rows), rows
    assert rows[0][TOTAL] == "10"
