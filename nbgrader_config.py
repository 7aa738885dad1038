"""nbgrader's view of this course, for the formgrader in JupyterLab (start `jupyter lab` in this folder).

Homework sources are `solutions/hwNN_x/hwNN_x.ipynb` (built by `course build` from the `.py` beside them) and
the student versions are `exercises/`. Generate exercises with `course build`, not with the formgrader's
"Generate" button: `course build` also strips editor metadata, and `course check` compares against its output.
"""

import os

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

_here = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.root = _here
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_here, "gradebook.db")
# never release a percent source (it holds the solutions)
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py"]
c.CourseDirectory.course_id = "dgm-course"
# nbgrader's release/collect exchange: a git-ignored folder of this checkout instead of the system-wide
# /usr/local/share/nbgrader/exchange (grading uses `course grade`; the exchange just has to exist)
c.Exchange.root = os.path.join(_here, ".nbgrader-exchange")
os.makedirs(c.Exchange.root, exist_ok=True)
