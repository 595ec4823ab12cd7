"""Run every benchmark and print one table: ``make bench`` (``python benchmarks/run.py``).

Options: ``--quick`` (sizes divided by ten, for a smoke run), ``--only NAME`` (run the
modules whose name contains NAME), ``--json PATH`` (also write the rows as JSON).

The plug-in protocol
--------------------
Every ``benchmarks/bench_*.py`` module is a benchmark. It plugs into the table by
defining::

    def rows(quick: bool = False) -> Iterable[Row | Mapping[str, Any]]:
        ...

Each row is a :class:`Row`, or any object or mapping with the same fields: ``name``,
``value`` (a float, or ``None`` when it could not be measured), ``unit`` (``"s"``,
``"ms"``, ``"x"`` for a ratio, ``"MB"``, ...), and optionally ``limit`` (the target:
``value`` must be at most ``limit``, or at least it when ``better="higher"``) and
``note``. A module need not import this file to build rows; mappings are enough.
Ratios are meant to be measured in the same run as their baseline: machines differ,
ratios travel. A module without ``rows`` is run as a script (``python bench_x.py``,
plus ``--quick`` when asked) and its output is printed as it is, after the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Row:
    """One measured number, with its target when it has one."""

    name: str
    value: float | None
    unit: str
    limit: float | None = None
    better: Literal["lower", "higher"] = "lower"
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "n/a"
        if self.limit is None:
            return ""
        ok = self.value <= self.limit if self.better == "lower" else self.value >= self.limit
        return "PASS" if ok else "FAIL"

    @property
    def target(self) -> str:
        if self.limit is None:
            return ""
        return f"{'<=' if self.better == 'lower' else '>='} {_number(self.limit)} {self.unit}"


def _number(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 1e6:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{value:.2e}"


def as_row(item: Row | Mapping[str, Any] | Any) -> Row:
    """A :class:`Row` from a row, a mapping or an object with the same fields."""
    if isinstance(item, Row):
        return item
    fields = ("name", "value", "unit", "limit", "better", "note")
    if isinstance(item, Mapping):
        data = {k: item[k] for k in fields if k in item}
    else:
        data = {k: getattr(item, k) for k in fields if hasattr(item, k)}
    value = data.get("value")
    data["value"] = None if value is None else float(value)
    return Row(**data)


def discover(only: str | None) -> list[Path]:
    return [p for p in sorted(HERE.glob("bench_*.py")) if only is None or only in p.stem]


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmarks_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_module(path: Path, quick: bool) -> tuple[list[Row], str]:
    """The rows of one benchmark module, or its script output when it has no ``rows``."""
    try:
        module = load(path)
        produce = getattr(module, "rows", None)
        if produce is None:
            command = [sys.executable, str(path), *(["--quick"] if quick else [])]
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
            output = done.stdout + (f"\n[stderr]\n{done.stderr}" if done.returncode else "")
            note = f"ran as a script (exit {done.returncode}); its output follows the table"
            return [Row(f"{path.stem}: script", None, "", note=note)], output
        takes_quick = "quick" in inspect.signature(produce).parameters
        items: Iterable[Any] = produce(quick=quick) if takes_quick else produce()
        return [as_row(item) for item in items], ""
    except Exception:
        return [Row(f"{path.stem}: crashed", None, "", note=traceback.format_exc(limit=3))], ""


def _shown(row: Row) -> str:
    return "-" if row.value is None else f"{_number(row.value)} {row.unit}"


def table(rows: list[Row]) -> str:
    header = ("benchmark", "value", "target", "", "note")
    lines = [(r.name, _shown(r), r.target, r.verdict, r.note) for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(4)]
    out = []
    rule = (*("-" * w for w in widths), "-" * 4)
    for line in [header, rule, *lines]:
        cells = [str(cell).ljust(widths[i]) for i, cell in enumerate(line[:4])]
        note = str(line[4]).replace("\n", " | ")
        out.append("  ".join([*cells, note]).rstrip())
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", help="run only the modules whose name contains this")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    rows: list[Row] = []
    scripts: list[tuple[str, str]] = []
    began = time.perf_counter()
    for path in discover(args.only):
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        module_rows, output = run_module(path, args.quick)
        rows.extend(module_rows)
        if output:
            scripts.append((path.name, output))
    print(table(rows))
    for name, output in scripts:
        print(f"\n== {name} (script output) ==\n{output.rstrip()}")
    failed = sum(r.verdict == "FAIL" for r in rows)
    print(f"\n{len(rows)} rows, {failed} over target, {time.perf_counter() - began:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
