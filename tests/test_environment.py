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
                "scikit-learn", "tqdm", "pytest", "pytest-xdist", "pot", "torchdiffeq"}
    assert set(pins) == expected, "a new dependency needs a reason in the README and an entry here"


def _readme_block(readme: str, marker: str) -> str:
    return re.search(rf"<!-- {marker} -->\s*```bash\n(.+?)\n```", readme, re.S).group(1).strip()


def test_ci_runs_the_readme_commands():
    """The two quick-start commands (and the browser tests) are what CI runs, word for word."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    ci_lines = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    for marker in ("test", "browser-test"):
        assert _readme_block(readme, marker) in ci_lines, f"CI does not run the README's {marker} command"
    assert _readme_block(readme, "lab") == "make lab"
    assert "rm -rf .venv" in ci, "CI must start from a fresh environment"
    assert "apt-get install -y chromium" in ci
    assert "apt-get install -y bubblewrap" in ci, "CI must grade in the sandbox (the red-team suite skips without it)"


def test_make_sets_up_with_the_readme_explicit_commands():
    """The Makefile's set-up recipe is the README's explicit set-up command, and its targets run the explicit
    test and browser commands: the two ways of working cannot drift apart."""
    readme = (ROOT / "README.md").read_text()
    make = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+)\s*[:?]?=\s*(.+?)\s*$", make, re.M))

    def expand(text):
        for _ in range(3):
            text = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), text)
        return text

    recipes = expand(make)
    assert _readme_block(readme, "setup") in recipes
    for command in _readme_block(readme, "open").splitlines():
        for part in command.split(" && "):
            assert part in recipes, f"the README's explicit command {part!r} is not what make runs"
    ready = re.search(r"^(\S+):\s*pyproject.toml", recipes, re.M)
    assert ready, "the set-up target must depend on pyproject.toml (reinstall only when it changes)"
    for target in ("lab", "test", "browser-test"):
        assert re.search(rf"^{target}:.*\S", recipes, re.M), f"make {target} is missing"
