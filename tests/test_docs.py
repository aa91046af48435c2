"""The README's promises that can be checked mechanically."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from napari_resample.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _pages() -> dict[str, str]:
    """The docs site's Markdown pages, by file name."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))}


def _code_lines(script: str) -> list[str]:
    return [
        ln.strip() for ln in script.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def test_readme_test_command_is_ci_run_and_ci_ends_with_pytest():
    # On a fresh clone `.venv/bin/python -m pytest` fails with "No module named pytest": the
    # README's test command is the script that installs what the suite needs, then runs it.
    readme = _readme()
    contributing = readme[readme.index("## Contributing") :]
    blocks = re.findall(r"```bash\n(.*?)```", contributing, flags=re.S)
    assert blocks and blocks[0].strip() == "bash .ci/run"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = _code_lines(ci)
    assert re.fullmatch(r"\.venv/bin/python -m pytest", lines[-1]), lines[-1]
    assert f"`{lines[-1]}`" in readme, "README names another rerun command than .ci/run's"
    assert any("venv .venv" in ln for ln in lines)
    assert any('".[testing]"' in ln for ln in lines)


def test_testing_extra_holds_what_the_suite_runs():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        re.split(r"[\[<>=;! ]", req, maxsplit=1)[0]
        for req in project["optional-dependencies"]["testing"]
    }
    assert {"pytest", "mkdocs", "ruff", "mypy"} <= names


def test_readme_main_command_runs_on_the_sample(tmp_path, monkeypatch, capsys):
    readme = _readme()
    quick = readme[readme.index("## Quick start") : readme.index("## Install")]
    line = next(ln for ln in quick.splitlines() if "napari-resample --sample" in ln)
    # a fresh machine: a new venv and the base install, then the command
    assert line.startswith("python3 -m venv .venv && .venv/bin/pip install -q . && ")
    args = shlex.split(line.split("napari-resample", 1)[1].split("&&")[0])
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    assert "Resampled image saved at:" in capsys.readouterr().out
    out_dir = tmp_path / args[args.index("--sample") + 1]
    assert (out_dir / "phantom_resampled.nii.gz").is_file()


def test_docs_work_type_claims_match_the_engine():
    # The docs said "float32 (float64 for float64 input)", but integers wider than 16 bits are
    # computed in float64: float32 cannot hold 2**30 + 1. Linear upsampling by 2 reproduces
    # every input voxel exactly at the even output voxels only if the engine computes in float64.
    import numpy as np

    from napari_resample import resample_array

    for dtype in ("int32", "uint32", "int64", "uint64"):
        data = (2**30 + np.arange(8 * 2 * 2)).reshape(8, 2, 2).astype(dtype)
        out, _ = resample_array(data, (16, 2, 2), interpolation="linear")
        assert out.dtype == data.dtype
        np.testing.assert_array_equal(out[::2], data, err_msg=dtype)
    text = " ".join(" ".join(_pages().values()).split())
    assert "float64 for float64 input and for integers wider than 16 bits" in text
    assert "never builds a float64 copy of 8- or 16-bit integer data" in text


def test_docs_site_builds_strictly(tmp_path):
    # mkdocs.yml turns every check mkdocs has (links, anchors, pages left out of the nav) into
    # a warning, and --strict makes a warning fail the build.
    import importlib.util

    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail("mkdocs is not installed: pip install -e '.[testing]'")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "WARNING" not in log, log
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()


def test_readme_is_the_hub_page():
    readme = _readme()
    assert len(readme.splitlines()) < 300
    headings = re.findall(r"^## (.+)$", readme, flags=re.M)
    for wanted in (
        "Quick start",
        "Install",
        "The napari plugin",
        "Python API",
        "Command line",
        "Known limits",
        "Contributing",
    ):
        assert any(h.startswith(wanted) for h in headings), wanted
    assert "](docs/screenshot.png)" in readme and (ROOT / "docs" / "screenshot.png").is_file()


def _slug(heading: str) -> str:
    """The anchor mkdocs (Python-Markdown's toc) gives a heading."""
    text = re.sub(r"[^\w\s-]", "", heading).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_readme_links_resolve():
    # Relative links of the hub page reach files of the repository, and their anchors headings.
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _readme()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path if path else ROOT / "README.md"
        if not file.exists():
            missing.append(target)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), flags=re.M)
            if anchor not in {_slug(h) for h in headings}:
                missing.append(target)
    assert not missing, missing


def test_no_pointer_to_a_specification_file_outside_the_repository():
    # README used to cite "shared/spec/resampling.md", which is not in this repository.
    texts = {"README.md": _readme(), **_pages()}
    stale = [name for name, text in texts.items() if re.search(r"spec/|resampling\.md", text)]
    assert not stale, stale


def test_changelog_has_unreleased_and_the_current_version():
    from napari_resample import __version__

    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    assert f"## [{__version__}]" in changelog


def test_license_file_is_the_declared_one_and_ships_in_the_sdist():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "BSD-3-Clause"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, napari-resample developers" in text
    assert "LICENSE" in project["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]


def _decisions() -> str:
    return (ROOT / "docs" / "decisions.md").read_text()


def _sources() -> list[Path]:
    return sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py")])


def test_decisions_cite_tests_that_exist():
    # docs/decisions.md names the tests that hold each decision as file::test; each must exist.
    cited = re.findall(r"`(test_\w+\.py)::(test_\w+)`", _decisions())
    assert len(cited) > 100
    missing = [
        f"{file}::{name}"
        for file, name in cited
        if not re.search(rf"^(async )?def {name}\(", (ROOT / "tests" / file).read_text(), re.M)
    ]
    assert not missing, f"docs/decisions.md cites tests that do not exist: {missing}"


def test_decision_pointers_resolve_and_old_citations_are_gone():
    # Code points at "docs/decisions.md, D7"; every Dn cited that way has a "## Dn" section, and
    # citations of the project's original issue / decisions / spec file (not in this repository)
    # do not come back.
    sections = set(re.findall(r"^## (D\d+) ", _decisions(), re.M))
    assert {f"D{n}" for n in range(1, 22)} <= sections
    old = re.compile(r"(?<!napari )\b(issue|decision)s? \d|spec: ?resampling\.md", re.I)
    unknown, stale = [], []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for pointer in re.findall(r"docs/decisions\.md, (D\d+(?:(?:-| and |, )D\d+)*)", text):
            unknown += [f"{path.name}: {d}" for d in re.findall(r"D\d+", pointer)]
        stale += [f"{path.name}: {m.group(0)}" for m in old.finditer(text)]
    assert not [u for u in unknown if u.split(": ")[1] not in sections]
    assert not stale, stale


def test_decisions_index_lists_every_section():
    # The index at the top had lost D16, D17, D20 and D21.
    text = _decisions()
    sections = dict(re.findall(r"^## (D\d+) (.+)$", text, re.M))
    indexed = dict(re.findall(r"^\| \[(D\d+)\]\(#([\w-]+)\) \|", text, re.M))
    assert indexed.keys() == sections.keys()
    wrong = [d for d, anchor in indexed.items() if anchor != _slug(f"{d} {sections[d]}")]
    assert not wrong, wrong


def test_qt6_by_default_and_an_install_that_works_today():
    # napari's default binding is PyQt6 (PyQt5 prints a deprecation warning at start), and the
    # package is not on PyPI yet: the README installs from a clone.
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    assert '"napari[pyqt6]"' in pyproject and "napari[pyqt5]" not in pyproject
    assert "napari[pyqt5]" not in readme and "napari[pyqt6]" in readme
    install = readme[readme.index("## Install") : readme.index("## The napari plugin")]
    assert "git clone" in install and "not on PyPI yet" in install


def test_architecture_page_names_every_module_and_each_rule_home_exists():
    # The page is the map a newcomer reads: a module missing from it, or a rule home that moved,
    # makes the map lie.
    import ast

    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    package = ROOT / "src" / "napari_resample"
    missing = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py") and path.name not in page
    ]
    assert not missing, f"docs/architecture.md does not name {missing}"
    tree = page[page.index("```\nsrc/napari_resample/") : page.index("## The layers")]
    named = set(re.findall(r"(\w+\.py)", tree))
    existing = {path.name for path in package.rglob("*.py")}
    assert named <= existing, (
        f"docs/architecture.md names modules that do not exist: {named - existing}"
    )
    rules = page[page.index("## Where each rule lives") : page.index("## The path of one file")]
    for home, names in re.findall(
        r"`((?:engine|io|pipeline|plugin|dataset|cli)/\w+\.py)`([^|]*)", rules
    ):
        path = package / home
        assert path.is_file(), home
        defined = {
            node.name if not isinstance(node, ast.Assign) else node.targets[0].id
            for node in ast.parse(path.read_text(encoding="utf-8")).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))
            or (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name))
        }
        for name in re.findall(r"`(\w+)`", names):
            assert name in defined, f"{name} is not defined in {home}"
