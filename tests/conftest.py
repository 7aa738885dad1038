import os
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).parent))  # for tests/submissions.py

ROOT = Path(__file__).resolve().parents[1]

# kernels, nbgrader and alembic are started by name: find the ones of this environment first
from course_utils.course.grading import venv_on_path  # noqa: E402

venv_on_path()


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one test process per core, at least 2 and at most 8 (``COURSE_TEST_WORKERS`` overrides); each
    notebook kernel gets the cores divided by the number of workers as its threads (``COURSE_THREADS``, unless set),
    so the processes never fight over threads: on 2 cores, two single-threaded notebooks run side by side."""
    from course_utils import _available_cpus

    cpus = _available_cpus()
    workers = int(os.environ.get("COURSE_TEST_WORKERS", max(2, min(8, cpus))))
    os.environ.setdefault("COURSE_THREADS", str(max(1, cpus // max(1, workers))))
    return workers


def pytest_collection_modifyitems(config, items):
    """nbval waits 5 s for a cell's outputs after the kernel's reply; on a loaded 2-core machine (two notebooks side by
    side) that is too short, and a finished cell fails as "Timeout of 5 seconds exceeded waiting for output"."""
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60


@pytest.fixture(scope="session")
def course():
    from course_utils.course.pipeline import Course

    return Course(ROOT)
