"""pyproject.toml and environment.yml list the same packages; the README shows the commands."""
import pathlib
import re

import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}
CONDA_ONLY = {"python", "pip", "cpuonly", "pytorch-cuda", "-e"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def test_conda_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {_name(r) for r in project["dependencies"]}
    pip_names |= {_name(r) for r in project["optional-dependencies"]["dev"]}
    conda = []
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines():
        m = re.match(r"^ {2}(?: {4})?- ([A-Za-z0-9_.-]+)", line)
        if m and not line.startswith("  - pip:"):
            conda.append(m.group(1))
    conda_names = {CONDA_NAMES.get(n.lower(), n.lower()) for n in conda} - CONDA_ONLY
    assert conda_names == pip_names


def test_lower_bounds_only_in_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert "==" not in req and "<" not in req, req


def test_readme_shows_the_two_commands_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make lesson N=" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_offline_subset_is_shipped_as_package_data():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"_data/*.npz"' in pyproject
    assert (ROOT / "companion" / "_data" / "mnist_offline.npz").stat().st_size < 1_000_000


def test_shipped_weights_are_package_data_and_small():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"_data/*.pt"' in pyproject
    for name in ("mnist_classifier.pt", "vae_lesson02.pt"):
        assert (ROOT / "companion" / "_data" / name).stat().st_size < 3_000_000, name
