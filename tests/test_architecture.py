"""The architecture holds: the import-linter contracts in pyproject.toml (layers, no GUI below
the napari side, a pure engine, no import cycle), the size limits, no module using another
module's private names; and the tests share their helpers and fixtures from one place each."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "napari_resample"

#: The size limits of the house style: lines of a module, of a class from ``class`` to its last
#: line, of a function body after its docstring.
MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 300
MAX_FUNCTION_BODY_LINES = 80


def contract_ids() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [c["id"] for c in config["tool"]["importlinter"]["contracts"]]


@pytest.mark.parametrize("contract", contract_ids())
def test_import_contract_is_kept(contract: str) -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint_imports is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[testing]'")
    # This checkout's package, whichever copy the environment has installed.
    paths = [str(SRC), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run(
        [lint_imports, "--no-cache", "--contract", contract],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # The report after the banner: the broken contract and each offending import chain.
    assert done.returncode == 0, done.stdout.split("Contracts", 1)[-1] + done.stderr


def modules() -> Iterator[tuple[str, Path]]:
    """Every module of the package as ``(dotted name, path)``."""
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = dict(modules())


def test_the_checks_below_see_every_module() -> None:
    # A size or privacy check that walks no file passes for nothing.
    assert {f"{PACKAGE}.api", f"{PACKAGE}.cli", f"{PACKAGE}.engine.resample"} <= MODULES.keys()
    assert all(path.is_file() for path in MODULES.values())


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, its docstring excluded."""
    body = node.body
    first = body[0]
    has_docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    start = first.end_lineno + 1 if has_docstring and len(body) > 1 else first.lineno
    return node.end_lineno - start + 1


def size_violations() -> Iterator[str]:
    for path in MODULES.values():
        source = path.read_text()
        where = path.relative_to(ROOT)
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES:
            yield f"module {where}: {lines} lines > {MAX_MODULE_LINES}"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    yield (
                        f"class {where}:{node.lineno} {node.name}: {length} lines > "
                        f"{MAX_CLASS_LINES}"
                    )
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = body_lines(node)
                if length > MAX_FUNCTION_BODY_LINES:
                    yield (
                        f"function {where}:{node.lineno} {node.name}: body {length} lines > "
                        f"{MAX_FUNCTION_BODY_LINES}"
                    )


def test_modules_classes_and_functions_stay_small() -> None:
    violations = list(size_violations())
    assert not violations, "\n".join(violations)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def absolute(module: str, node: ast.ImportFrom, importer: str) -> str:
    """The absolute name of ``from <module> import ...`` as written in ``importer``."""
    if not node.level:
        return module
    package = (
        importer.split(".")
        if MODULES[importer].name == "__init__.py"
        else importer.split(".")[:-1]
    )
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, module] if module else base)


def private_name_uses(importer: str, tree: ast.Module) -> Iterator[str]:
    """Another module's private names that ``importer`` imports or reaches as ``module._name``.

    Private *modules* are import-linter's business (the private_modules contract); here a
    private name is a function, class or constant whose home module is another one of ours.
    """
    aliases: dict[str, str] = {}  # local name -> our module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != PACKAGE:
                    continue
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    aliases[PACKAGE] = PACKAGE
        elif isinstance(node, ast.ImportFrom):
            home = absolute(node.module or "", node, importer)
            if home.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                full = f"{home}.{alias.name}"
                if full in MODULES:  # a module bound to a name: its attributes are checked below
                    aliases[alias.asname or alias.name] = full
                elif is_private(alias.name) and home != importer:
                    yield f"{importer}:{node.lineno} imports {alias.name} from {home}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain: list[str] = []
        base: ast.expr = node
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if not isinstance(base, ast.Name) or base.id not in aliases:
            continue
        # Only the outermost attribute of a chain is reported, once.
        home = aliases[base.id]
        for attr in chain:
            if f"{home}.{attr}" in MODULES:
                home = f"{home}.{attr}"
                continue
            if is_private(attr) and home != importer and attr == node.attr:
                yield f"{importer}:{node.lineno} uses {home}.{attr}"
            break


def test_no_module_uses_another_modules_private_names() -> None:
    violations = sorted(
        use
        for name, path in MODULES.items()
        for use in private_name_uses(name, ast.parse(path.read_text()))
    )
    assert not violations, "\n".join(violations)


# ------------------------------------------------------------------------- the tests' own house

TESTS = Path(__file__).resolve().parent


def fixture_names(tree: ast.Module) -> Iterator[str]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Attribute) and target.attr == "fixture":
                    yield node.name


def test_tests_share_helpers_and_fixtures_from_one_place_each() -> None:
    # Shared helpers live in tests/_*.py or conftest.py; a test module imported by another is
    # collected twice and hides where a helper lives. A fixture defined in two modules means
    # two fixtures under one name.
    imports, homes = [], {}
    for path in sorted(TESTS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            imports += [
                f"{path.name}:{node.lineno} imports {n}"
                for n in names
                if n.split(".")[0].startswith("test_")
            ]
        for name in fixture_names(tree):
            homes.setdefault(name, []).append(path.name)
    assert "conftest.py" in homes.get("nifti_case", []), "the fixture scan sees no fixture"
    assert not imports, "\n".join(imports)
    twice = {name: where for name, where in homes.items() if len(where) > 1}
    assert not twice, twice
