"""``sampleplan plan`` and ``sampleplan report``: the class table people read."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sampleplan.service.main import cli
from tests.helpers import reference
from tests.helpers.servers import LiveServer


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


def class_table(out: str) -> dict[str, list[str]]:
    """The printed table's rows by class: the cells after the class name."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("class "))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    return rows


def test_plan_on_a_csv_prints_the_class_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(["cat", "dog", "emu"], p=[0.8, 0.15, 0.05], size=300).tolist()
    manifest = tmp_path / "train.csv"
    manifest.write_text(
        "path,label\n" + "".join(f"img/{i}.png,{c}\n" for i, c in enumerate(labels))
    )

    code, out, err = run(
        ["plan", str(manifest), "--split", "0.7,0.3", "--split-seed", "42", "--seed", "42"], capsys
    )
    assert code == 0, err
    population = reference.population(len(labels), [0.7, 0.3], 42)
    counts = Counter(labels[i] for i in population)
    table = class_table(out)
    assert list(table) == ["cat", "dog", "emu", "all"]
    for name in ("cat", "dog", "emu"):
        count, weight, data_share, draw_share, draws = table[name][:5]
        assert int(count) == counts[name]
        assert float(weight) == pytest.approx(1 / counts[name], rel=1e-5)
        assert data_share == f"{100 * counts[name] / len(population):.1f}%"
        assert draw_share == "33.3%"  # inverse frequency: every class draws equally
        assert float(draws) == pytest.approx(len(population) / 3, abs=0.05)
    assert table["all"][0] == f"{len(population):,}"
    assert "computed locally" in out
    assert "warning: class emu" in out  # about 70 draws of its few samples


def test_plan_on_a_path_list_indexes_classes_like_imagefolder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = (
        [f"zebra/{i}.jpg" for i in range(7)]
        + [f"Ant/{i}.jpg" for i in range(2)]
        + [f"bee/{i}.jpg" for i in range(5)]
    )
    np.random.default_rng(1).shuffle(files)
    listing = tmp_path / "files.txt"
    listing.write_text("\n".join(files) + "\n")

    code, out, err = run(["plan", str(listing), "--strategy", "uniform"], capsys)
    assert code == 0, err
    table = class_table(out)
    # ImageFolder sorts class folders as Python sorts strings: upper case first.
    assert list(table) == ["Ant", "bee", "zebra", "all"]
    assert [table[c][0] for c in ("Ant", "bee", "zebra")] == ["2", "5", "7"]
    # uniform: draw shares equal data shares.
    assert [table[c][2] for c in ("Ant", "bee", "zebra")] == [
        table[c][3] for c in ("Ant", "bee", "zebra")
    ]


def test_plan_locally_and_on_a_service_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], live_server: LiveServer
) -> None:
    manifest = tmp_path / "labels.jsonl"
    manifest.write_text(
        "".join(json.dumps({"label": int(c)}) + "\n" for c in [0] * 30 + [1] * 6 + [2] * 2)
    )
    args = ["plan", str(manifest), "--split", "30,8", "--json"]
    code, local, err = run(args, capsys)
    assert code == 0, err
    code, remote, err = run([*args, "--url", live_server.url], capsys)
    assert code == 0, err
    local_plan, remote_plan = json.loads(local), json.loads(remote)
    assert local_plan == remote_plan
    assert local_plan["population_size"] == 30

    code, out, err = run(
        ["report", local_plan["id"], "--url", live_server.url, "-o", str(tmp_path / "r.html")],
        capsys,
    )
    assert code == 0, err
    html = (tmp_path / "r.html").read_text()
    assert html.count('<rect class="bar-after"') == 3
    code, out, err = run(["report", local_plan["id"], "--url", live_server.url, "-o", "-"], capsys)
    assert code == 0 and out == html


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_plan_on_a_table_reads_its_label_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], live_server: LiveServer, suffix: str
) -> None:
    names = ["cat"] * 5 + ["dog"] * 2 + ["emu"]
    table = pa.table({"image": [f"{i}.png" for i in range(len(names))], "y": names})
    path = tmp_path / f"labels{suffix}"
    if suffix == ".parquet":
        pq.write_table(table, path)
    else:
        with pa.ipc.new_stream(path, table.schema) as writer:  # as datasets writes .arrow
            writer.write_table(table)
    csv = tmp_path / "labels.csv"
    csv.write_text("y\n" + "".join(f"{n}\n" for n in names))
    args = ["--label-column", "y", "--algorithm", "hierarchical", "--json"]
    code, from_csv, err = run(["plan", str(csv), *args], capsys)
    assert code == 0, err
    code, local, err = run(["plan", str(path), *args], capsys)
    assert code == 0, err
    code, remote, err = run(["plan", str(path), *args, "--url", live_server.url], capsys)
    assert code == 0, err
    assert json.loads(local) == json.loads(remote) == json.loads(from_csv)
    assert [row["class"] for row in json.loads(local)["classes"]] == ["cat", "dog", "emu"]


def test_plan_writes_a_local_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = tmp_path / "labels.npy"
    np.save(labels, np.array([3, 3, 3, 3, 7, 9]))
    code, out, err = run(["plan", str(labels), "--report", str(tmp_path / "report.html")], capsys)
    assert code == 0, err
    assert list(class_table(out)) == ["3", "7", "9", "all"]
    assert (tmp_path / "report.html").read_text().count('<rect class="bar-before"') == 3


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda d: d / "labels.xlsx", [], "cannot tell the format"),
        (lambda d: d / "labels.parquet", [], "labels.parquet' is not a Parquet file"),
        (
            lambda d: d / "y.parquet",
            [],
            "no column 'label'; its columns are 'y' (name the label column with --label-column)",
        ),
        (lambda d: d / "missing.csv", [], "cannot read"),
        (lambda d: d / "ok.csv", ["--split", "0.7,x"], "--split takes numbers"),
        (lambda d: d / "ok.csv", ["--split", "0.5,0.6"], "must add up to 1"),
        (
            lambda d: d / "ok.csv",
            ["--column", "nope"],
            "no column 'nope' (its columns: 'label'); name the label column with --column",
        ),
        (lambda d: d / "ok.csv", ["--class-weight", "a=2"], "needs --strategy class_weights"),
        (
            lambda d: d / "ok.csv",
            ["--strategy", "class_weights", "--class-weight", "zzz=2"],
            "does not have: 'zzz'",
        ),
        (lambda d: d / "ok.csv", ["--definition", "stratify"], "--definition takes NAME=VERSION"),
        (
            lambda d: d / "ok.csv",
            ["--definition", "stratify=stratified-v9"],
            "definitions.stratify should be one of stratified-v1, stratified-v2",
        ),
    ],
)
def test_plan_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, args: list[str], message: str
) -> None:
    (tmp_path / "ok.csv").write_text("label\na\nb\na\n")
    (tmp_path / "labels.parquet").write_bytes(b"PAR1")
    (tmp_path / "labels.xlsx").write_bytes(b"PK")
    pq.write_table(pa.table({"y": [1, 2]}), tmp_path / "y.parquet")
    path = make(tmp_path)  # type: ignore[operator]
    code, _, err = run(["plan", str(path), *args], capsys)
    assert code == 1
    assert err.startswith("sampleplan plan: error: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_report_of_an_unknown_plan(
    capsys: pytest.CaptureFixture[str], live_server: LiveServer
) -> None:
    code, _, err = run(["report", "0" * 64, "--url", live_server.url, "-o", "-"], capsys)
    assert code == 1
    assert "no plan has id" in err


def test_serve_is_still_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["serve", "--help"], capsys)
    assert code == 0
    assert "--port" in out


def test_plan_on_label_sets_locally_and_on_a_service_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], live_server: LiveServer
) -> None:
    """A CSV of label sets (split on --label-separator), reduced and stratified, both ways."""
    rows = [["cat", "dog"], ["cat"], [], ["dog"], ["emu", "cat"], ["cat"]] * 6
    manifest = tmp_path / "tags.csv"
    manifest.write_text(
        "path,tags\n" + "".join(f"{i}.png,{';'.join(r)}\n" for i, r in enumerate(rows))
    )
    args = [
        "plan",
        str(manifest),
        "--column",
        "tags",
        "--label-separator",
        ";",
        "--label-reduce",
        "max",
        "--unlabelled-weight",
        "0.05",
        "--split",
        "0.5,0.5",
        "--stratify",
        "--json",
    ]
    code, local, err = run(args, capsys)
    assert code == 0, err
    code, remote, err = run([*args, "--url", live_server.url], capsys)
    assert code == 0, err
    local_plan, remote_plan = json.loads(local), json.loads(remote)
    assert local_plan == remote_plan
    assert local_plan["config"]["label_reduce"] == "max"
    assert local_plan["config"]["split"]["stratify"] is True
    assert local_plan["population_size"] == 18 and local_plan["label_sets"]["unlabelled"] <= 6
    assert [c["count"] for c in local_plan["classes"]] == [12, 6, 3]  # exact halves of 24, 12, 6
    newer = [*args, "--definition", "stratify=stratified-v2"]
    code, local, err = run(newer, capsys)
    assert code == 0, err
    code, remote, err = run([*newer, "--url", live_server.url], capsys)
    assert code == 0, err
    assert json.loads(local) == json.loads(remote)
    assert json.loads(local)["versions"]["stratify"] == "stratified-v2"
    code, out, err = run([*args[:-1]], capsys)
    assert code == 0, err
    assert "cat" in out and "emu" in out
    code, _, err = run(["plan", str(manifest), "--label-separator", "::"], capsys)
    assert code != 0 and "one character" in err
