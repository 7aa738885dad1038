"""Run nbgrader's generate_assignment for several assignments in one process:
``python -I _generate.py ROOT NAME [NAME ...]`` (``course build`` and ``course check``).

The same as ``nbgrader generate_assignment NAME --force --no-db`` once per name, without paying nbgrader's start-up
for each homework. A script, not a module of the package, so that it does not import torch.
"""

import logging
import sys

from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")  # nbgrader's errors, if any
    root, names = sys.argv[1], sys.argv[2:]
    for name in names:
        c = Config()
        c.CourseDirectory.root = root
        c.CourseDirectory.assignment_id = name
        c.GenerateAssignment.no_database = True   # what `--no-db` sets
        c.SaveCells.enabled = False
        c.GenerateAssignment.force = True
        GenerateAssignment(coursedir=CourseDirectory(config=c), config=c).start()


if __name__ == "__main__":
    main()
