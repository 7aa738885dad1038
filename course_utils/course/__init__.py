"""The instructor's machinery behind the ``course`` command: nothing in the library imports it.

- :mod:`.cli`       the ``course`` command line (build, check, grade, bench)
- :mod:`.pipeline`  one source per homework → solution notebook and nbgrader exercise; lecture pairs; ``course check``
- :mod:`.grading`   ``course grade``: a folder of submissions → nbgrader gradebook and a CSV with statuses
- :mod:`.bench`     ``course bench``: notebook times against their budgets, model benchmarks on the toy zoo
"""
