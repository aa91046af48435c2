"""The house style holds: ruff (lint and format) and mypy are clean, and pre-commit runs them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("args", [("check", "."), ("format", "--check", ".")])
def test_ruff(args):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: pip install -e '.[testing]'")
    proc = _run(ruff, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy():
    proc = _run(sys.executable, "-m", "mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pre_commit_runs_the_same_checks():
    # .pre-commit-config.yaml must run what this module runs: ruff with --fix, ruff-format and
    # mypy. pyyaml comes with napari.
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff", "ruff-format", "mypy"} <= hooks.keys()
    assert "--fix" in hooks["ruff"].get("args", [])
    mypy = hooks["mypy"]
    if mypy.get("language") == "system":  # the environment's mypy, reading pyproject's files
        assert mypy["entry"].split()[0] == "mypy" and mypy.get("pass_filenames") is False
