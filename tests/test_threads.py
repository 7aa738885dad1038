"""The course's one thread policy (README, "Threads"): leave a core free, at most 4, COURSE_THREADS overrides."""

import pytest
import torch

import course_utils
from course_utils import default_threads, set_threads


@pytest.mark.parametrize("cpus, expected", [(1, 1), (2, 1), (3, 2), (4, 3), (8, 4), (64, 4)])
def test_default_leaves_one_core_free_and_caps_at_four(monkeypatch, cpus, expected):
    monkeypatch.delenv("COURSE_THREADS", raising=False)
    monkeypatch.setattr(course_utils, "_available_cpus", lambda: cpus)
    assert default_threads() == expected


def test_course_threads_overrides_and_bad_values_are_explained(monkeypatch):
    monkeypatch.setattr(course_utils, "_available_cpus", lambda: 2)
    monkeypatch.setenv("COURSE_THREADS", "3")
    assert default_threads() == 3
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv("COURSE_THREADS", bad)
        with pytest.raises(ValueError, match="COURSE_THREADS"):
            default_threads()


def test_set_threads_applies_the_policy(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("COURSE_THREADS", "1")
        assert set_threads() == 1 and torch.get_num_threads() == 1
        assert set_threads(2) == 2 and torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="positive whole number"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)
