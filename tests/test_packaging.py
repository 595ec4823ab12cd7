"""The distribution: one import package, the import direction, one version.

The wheel installs `sampleplan` only (generic top-level names like `service` or `client`
would be shadowed by a training repository's own files). Inside it, imports run one way:
the core imports neither the service nor the client, and the client does not import
the service.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import sampleplan

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sampleplan"


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute imports; the project has no relative ones)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            found.add(node.module)
    return found


def _modules_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


@pytest.mark.parametrize(
    ("part", "forbidden"),
    [
        ("core", ("sampleplan.service", "sampleplan.client", "sampleplan.cli", "fastapi")),
        ("client", ("sampleplan.service", "sampleplan.cli", "fastapi", "sqlalchemy")),
        # The trainer integrations sit on the client; nothing below imports them.
        ("core", ("sampleplan.integrations", "transformers")),
        ("client", ("sampleplan.integrations", "transformers")),
        ("integrations", ("sampleplan.service", "sampleplan.cli", "fastapi", "sqlalchemy")),
    ],
)
def test_imports_run_one_way(part: str, forbidden: tuple[str, ...]) -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in _modules_under(PACKAGE / part)
        for module in _imports(path)
        if any(module == name or module.startswith(name + ".") for name in forbidden)
    }
    assert not offenders


def test_no_module_imports_the_old_top_level_names() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for folder in ("sampleplan", "service", "client", "tests", "benchmarks", "examples")
        for path in _modules_under(ROOT / folder)
        for module in _imports(path)
        if module.split(".")[0] in ("service", "client")
    }
    assert not offenders


def test_the_links_lead_to_the_design_cards_folders() -> None:
    assert (PACKAGE / "service").resolve() == ROOT / "service"
    assert (PACKAGE / "client").resolve() == ROOT / "client"


def test_the_version_has_one_source() -> None:
    project = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in project
    assert 'version = { attr = "sampleplan.__version__" }' in project
    others = [
        path.relative_to(ROOT).as_posix()
        for folder in ("sampleplan", "service", "client")
        for path in _modules_under(ROOT / folder)
        if "__version__ =" in path.read_text()
    ]
    assert others == ["sampleplan/__init__.py"]


def test_the_wheel_holds_one_top_level_package(tmp_path: Path) -> None:
    # Build from the files git tracks (a copy), so no build/ folder is left in the tree
    # and nothing untracked slips in.
    source = tmp_path / "source"
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    source.mkdir()
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    # The working tree's versions of the package files (the change under test may be
    # uncommitted), copied over the archive's.
    for folder in ("sampleplan", "service", "client"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and not path.is_symlink():
                target = source / path.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    (source / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--wheel-dir",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("sampleplan-*.whl")
    assert wheel.name.startswith(f"sampleplan-{sampleplan.__version__}-")
    with zipfile.ZipFile(wheel) as contents:
        names = contents.namelist()
    top = {name.split("/")[0] for name in names if not name.startswith("sampleplan-")}
    assert top == {"sampleplan"}
    # Every package folder of the tree is in the wheel, with the py.typed markers.
    packaged = {name.rsplit("/", 1)[0] for name in names if name.endswith("/__init__.py")}
    folders = {
        init.parent.relative_to(ROOT).as_posix()
        for folder in ("sampleplan", "service", "client")
        for init in (ROOT / folder).rglob("__init__.py")
        if not init.parent.relative_to(ROOT)
        .as_posix()
        .startswith(("sampleplan/service", "sampleplan/client"))
    }
    expected = {f if f.startswith("sampleplan") else f"sampleplan/{f}" for f in folders}
    assert packaged == expected
    assert {"sampleplan/py.typed", "sampleplan/client/py.typed"} <= set(names)
