"""benchmarks/run.py: the plug-in protocol and the table (not the benchmarks themselves)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_runner", RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


def test_rows_from_mappings_objects_and_rows(run: ModuleType) -> None:
    class Obj:
        name, value, unit, limit = "obj", 3, "ms", 2.0

    rows = [
        run.as_row({"name": "fast", "value": 0.5, "unit": "x", "limit": 0.6}),
        run.as_row(Obj()),
        run.as_row(run.Row("big", 10.0, "x", limit=5.0, better="higher")),
        run.as_row({"name": "info", "value": 1234.5, "unit": "MB"}),
        run.as_row({"name": "missing", "value": None, "unit": "s", "limit": 1.0}),
    ]
    assert [r.verdict for r in rows] == ["PASS", "FAIL", "PASS", "", "n/a"]
    text = run.table(rows)
    assert "<= 0.6 x" in text and ">= 5 x" in text
    assert "1234 MB" in text  # large values without decimals


def test_modules_with_rows_and_scripts(run: ModuleType, tmp_path: Path) -> None:
    with_rows = tmp_path / "bench_a.py"
    with_rows.write_text(
        "def rows(quick=False):\n"
        "    return [{'name': 'a', 'value': 2 if quick else 1, 'unit': 's'}]\n"
    )
    script = tmp_path / "bench_b.py"
    script.write_text("import sys\nprint('hello', sys.argv[1:])\n")
    broken = tmp_path / "bench_c.py"
    broken.write_text("def rows():\n    raise RuntimeError('nope')\n")
    rows, output = run.run_module(with_rows, True)
    assert [(r.name, r.value) for r in rows] == [("a", 2.0)] and output == ""
    rows, output = run.run_module(script, True)
    assert rows[0].value is None and "hello ['--quick']" in output
    rows, _ = run.run_module(broken, False)
    assert rows[0].name == "bench_c: crashed" and "nope" in rows[0].note
