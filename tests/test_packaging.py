"""Ready for the hub: the sdist and the wheel build, pass ``twine check`` and carry the napari
manifest (copied from the top level, no symlink); a plain install brings no GUI; the GitHub
Actions workflow passes actionlint."""

from __future__ import annotations

import email
import importlib.resources
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    pytest.importorskip("twine")
    files = sorted(p.name for p in dist.iterdir())
    assert any(f.endswith(".tar.gz") for f in files) and any(f.endswith(".whl") for f in files)
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_wheel_carries_the_manifest_license_and_entry_points(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        manifest = zf.read("napari_resample/napari.yaml").decode()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "name: napari-resample" in manifest
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert "napari.manifest" in entry_points and "napari-resample = napari_resample.cli:main" in (
        entry_points
    )


#: What the napari side needs and a server install must not bring (distribution names).
GUI = {"napari", "magicgui", "npe2", "superqt", "qtpy", "pyqt5", "pyqt6", "pyside2", "pyside6"}


def wheel_requirements(dist: Path) -> list[Requirement]:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA")))
    return [Requirement(r) for r in email.message_from_bytes(metadata).get_all("Requires-Dist")]


def in_extra(requirement: Requirement, extra: str | None) -> bool:
    """Whether pip installs ``requirement`` for ``napari-resample[extra]`` (None: no extra)."""
    if requirement.marker is None:
        return True
    return requirement.marker.evaluate({"extra": extra or ""})


def test_plain_install_brings_no_gui(dist: Path) -> None:
    # `pip install napari-resample` on a server: the library and the CLI, no napari, no Qt.
    base = {r.name.lower() for r in wheel_requirements(dist) if in_extra(r, None)}
    assert {"numpy", "scipy", "nibabel", "simpleitk", "isal", "tqdm"} <= base
    assert base.isdisjoint(GUI), sorted(base & GUI)


def test_napari_extra_brings_the_napari_side(dist: Path) -> None:
    # `pip install napari-resample[napari]`; napari's plugin manager installs into an
    # environment that has napari, which brings these four itself.
    napari = {r.name.lower() for r in wheel_requirements(dist) if in_extra(r, "napari")}
    assert {"napari", "magicgui", "npe2", "superqt"} <= napari


def test_wheel_manifest_is_the_top_level_one(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        packaged = zf.read("napari_resample/napari.yaml")
    assert packaged == (ROOT / "napari.yaml").read_bytes()


def test_installed_manifest_is_the_top_level_one() -> None:
    # What npe2 reads through the entry point napari_resample:napari.yaml. In an editable
    # install it is hatch_build.py's copy in src/: reinstall after editing napari.yaml.
    installed = importlib.resources.files("napari_resample") / "napari.yaml"
    assert installed.is_file(), f"{installed} is missing: pip install -e . copies it there"
    assert installed.read_bytes() == (ROOT / "napari.yaml").read_bytes(), (
        f"{installed} differs from the top-level napari.yaml: reinstall (pip install -e .)"
    )


def test_repository_holds_no_symlink() -> None:
    # A Windows checkout writes a symlink as a text file holding its target's path.
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(
        ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert files
    links = [line.split("\t", 1)[1] for line in files if line.startswith("120000 ")]
    assert not links, links


def test_workflow_passes_actionlint() -> None:
    actionlint = shutil.which("actionlint") or str(Path(sys.executable).with_name("actionlint"))
    if not Path(actionlint).exists():
        pytest.skip("actionlint is not installed (the testing extra has it on Linux x86-64)")
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    done = subprocess.run([actionlint, *map(str, workflows)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
