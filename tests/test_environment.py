"""The set-up: environment.yml and pyproject.toml pin the same packages; the README's commands are what CI runs."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_pins(extras=True):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    if extras:
        deps += [d for group in project.get("optional-dependencies", {}).values() for d in group]
    return dict(d.split("==") for d in deps)


def _environment_pins():
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"\s+-\s+([A-Za-z0-9_.-]+)==(\S+)\s*(#.*)?$", line)
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


def test_environment_yml_and_pyproject_pin_the_same_packages():
    assert _pyproject_pins() == _environment_pins()
    assert "python=3.11" in (ROOT / "environment.yml").read_text()
    assert "- -e ." in (ROOT / "environment.yml").read_text()


def test_every_dependency_is_pinned_and_no_torchvision():
    pins = _pyproject_pins(extras=False)
    assert pins["torch"] == "2.13.0"
    assert "torchvision" not in pins
    expected = {"torch", "numpy", "matplotlib", "ipywidgets", "jupyterlab", "jupytext", "nbval", "nbgrader",
                "scikit-learn", "tqdm", "pytest", "pot", "torchdiffeq"}
    assert set(pins) == expected, "a new dependency needs a reason in the README and an entry here"


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    setup = re.search(r"<!-- setup -->\s*```bash\n(.+?)\n```", readme, re.S).group(1).strip()
    test = re.search(r"<!-- test -->\s*```bash\n(.+?)\n```", readme, re.S).group(1).strip()
    browser = re.search(r"<!-- browser-test -->\s*```bash\n(.+?)\n```", readme, re.S).group(1).strip()
    assert setup in ci and test in ci and browser in ci
    assert "<!-- open -->" in readme
    assert "apt-get install -y chromium" in ci
