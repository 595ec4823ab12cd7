"""The ``sampleplan`` command for someone meeting it: fast help, a version, help on every
option, progress on long steps, folders as input, readable logs on a terminal.

``--help``'s speed is measured in ``benchmarks/bench_cli.py`` (target 0.5 s); here the
cause is held in place: building the parser imports none of the heavy packages.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest

from sampleplan import __version__
from sampleplan.cli import (
    ALGORITHM_CHOICES,
    LABEL_REDUCE_CHOICES,
    STRATEGY_CHOICES,
    build_parser,
    main,
)
from sampleplan.core.algorithms import ALGORITHMS
from sampleplan.core.labelsets import LABEL_REDUCES
from sampleplan.core.weighting import STRATEGIES
from sampleplan.service.logs import resolve_format
from sampleplan.service.progress import Progress

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "numpy",
    "torch",
    "fastapi",
    "starlette",
    "pydantic",
    "sqlalchemy",
    "httpx",
    "sampleplan.client",
)


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from sampleplan.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('heavy:', ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "usage: sampleplan" in result.stdout
    assert result.stdout.splitlines()[-1] == "heavy: "  # no heavy module was imported


def test_the_console_script_prints_its_version() -> None:
    script = Path(sys.executable).with_name("sampleplan")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "sampleplan.service.main"]
    result = subprocess.run(
        [*argv, "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sampleplan {__version__}"


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_parsers(sub))
    return found


def test_every_option_and_command_has_help() -> None:
    parsers = _parsers(build_parser())
    assert {p.prog for p in parsers} >= {
        "sampleplan",
        "sampleplan serve",
        "sampleplan plan",
        "sampleplan report",
    }
    for parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{parser.prog} {choice.dest}"
                continue
            assert action.help and action.help != argparse.SUPPRESS, (
                f"{parser.prog} {action.option_strings or action.dest} has no help"
            )


def test_the_written_out_choices_are_the_cores() -> None:
    # Written out so that --help imports no numpy (NOTE [A fast --help]).
    assert tuple(s for s in STRATEGIES if s != "sample_weights") == STRATEGY_CHOICES
    assert tuple(ALGORITHM_CHOICES) == tuple(ALGORITHMS)
    assert LABEL_REDUCE_CHOICES == LABEL_REDUCES


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_progress_on_stderr_when_asked_and_silence_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("label\n" + "a\n" * 50 + "b\n" * 5, encoding="utf-8")
    code, out, err = _run(["plan", str(path), "--progress"], capsys)
    assert code == 0
    assert "loading the sampling core" in err
    assert f"reading {path}" in err and "100%" in err
    assert "parsing csv" in err and "computing the plan" in err and " done" in err
    assert "class " in out  # the table on stdout, untouched by the progress lines
    # stderr is not a terminal here: no progress unless asked.
    code, _, err = _run(["plan", str(path)], capsys)
    assert code == 0 and err == ""


def test_a_stage_shows_a_bar_and_its_time() -> None:
    stream = io.StringIO()
    progress = Progress(enabled=True, stream=stream, interval=0.01)
    with progress.stage("reading big.csv", total=2_000_000) as stage:
        stage.advance(1_000_000)
    text = stream.getvalue()
    assert "reading big.csv" in text and "50%" in text and "1.0 MB/2.0 MB" in text
    assert text.endswith(" done\n")
    quiet = io.StringIO()
    with Progress(enabled=False, stream=quiet).stage("x", total=1) as stage:
        stage.advance(1)
    assert quiet.getvalue() == ""


def test_plan_reads_an_imagefolder_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ["cat/1.jpg", "cat/2.JPG", "cat/notes.txt", "dog/1.png", "dog/sub/2.png"]:
        (tmp_path / "train" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "train" / name).write_bytes(b"")
    code, out, err = _run(["plan", str(tmp_path / "train"), "--json"], capsys)
    assert code == 0, err
    assert '"population_size": 4' in out
    assert [
        line.split('"class": ')[1].strip().strip(",")
        for line in out.splitlines()
        if '"class": ' in line
    ] == ['"cat"', '"dog"']


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_logs_are_text_on_a_terminal_and_json_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert resolve_format("auto") == "text"
    assert resolve_format("json") == "json"
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert resolve_format("auto") == "json"
    assert resolve_format("text") == "text"
