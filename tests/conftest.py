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


@pytest.fixture(scope="session")
def course():
    from course_utils.course.pipeline import Course

    return Course(ROOT)
