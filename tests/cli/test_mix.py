"""``sampleplan mix``: a mixture file's sources, their token lengths from data files, and
each source's share, computed by the core (NOTE [Mixtures])."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from sampleplan.cli import main
from sampleplan.core.mixtures import (
    Mixing,
    Mixture,
    MixtureSource,
    mixture_drawer,
    mixture_shares,
)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


def _files(tmp_path: Path) -> dict[str, np.ndarray]:
    tokens = {
        "code": np.arange(1, 41, dtype=np.int64),
        "math": np.full(12, 7.5),
        "chat": np.arange(30, dtype=np.int64) % 5 + 1,
        "books": np.full(9, 100, dtype=np.int32),
    }
    pq.write_table(
        pa.table({"tokens": tokens["code"], "text": ["x"] * 40}), tmp_path / "code.parquet"
    )
    (tmp_path / "math.jsonl").write_text(
        "".join(json.dumps({"n": float(v)}) + "\n" for v in tokens["math"])
    )
    (tmp_path / "chat.csv").write_text(
        "len,text\n" + "".join(f"{v},hello\n" for v in tokens["chat"])
    )
    feather.write_feather(pa.table({"tokens": tokens["books"]}), str(tmp_path / "books.arrow"))
    return tokens


def test_shares_of_a_mixture_with_token_lengths_from_four_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = _files(tmp_path)
    spec = {
        "sources": [
            {"name": "code", "file": "code.parquet", "length_column": "tokens", "weight": 4},
            {"name": "math", "file": "math.jsonl", "length_column": "n", "weight": 3},
            {"name": "chat", "file": "chat.csv", "length_column": "len", "weight": 2},
            {"name": "books", "file": "books.arrow", "length_column": "tokens", "weight": 1},
        ],
        "mixing": {"unit": "tokens", "block": 16},
        "num_samples": 320,
        "seed": 3,
    }
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(spec))
    code, out, err = _run(["mix", str(path), "--json", "--epoch", "2"], capsys)
    assert code == 0, err
    answer = json.loads(out)
    expected_mixture = Mixture(
        tuple(
            MixtureSource(
                s["name"],
                len(tokens[s["name"]]),
                s["weight"],
                "reshuffled",
                tokens[s["name"]].astype(np.float64),
            )
            for s in spec["sources"]
        ),
        Mixing(unit="tokens", block=16),
        seed=3,
        num_samples=320,
    )
    expected = mixture_shares(mixture_drawer(expected_mixture), 2)
    assert [s["samples"] for s in answer["sources"]] == [s.samples for s in expected]
    assert [s["passes"] for s in answer["sources"]] == [s.passes for s in expected]
    assert [s["tokens_realised"] for s in answer["sources"]] == [
        s.tokens_realised for s in expected
    ]
    assert answer["versions"]["algorithm"] == "mixture-v1"
    assert answer["num_samples"] == 320
    # math (12 samples) is taken far more than 4 times over in 320 draws
    assert answer["sources"][1]["warning"] is not None

    code, table, _ = _run(["mix", str(path)], capsys)
    assert code == 0
    assert table.splitlines()[1].split() == [
        "source",
        "requested",
        "realised",
        "samples",
        "tokens",
        "passes",
    ]
    assert "warning: source 'math'" in table


def test_lengths_without_files_and_hf_interleave(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {
        "sources": [
            {"name": "a", "length": 300, "weight": 0.8, "order": "sequential"},
            {"name": "b", "file": "b.parquet", "weight": 0.2, "order": {"shuffle_seed": 7}},
        ],
        "mixing": {"algorithm": "hf-interleave", "stopping": "all_exhausted"},
        "seed": 42,
    }
    pq.write_table(pa.table({"x": list(range(50))}), tmp_path / "b.parquet")
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(spec))
    code, out, err = _run(["mix", str(path), "--json"], capsys)
    assert code == 0, err
    answer = json.loads(out)
    mixture = Mixture(
        (MixtureSource("a", 300, 0.8, "sequential"), MixtureSource("b", 50, 0.2, "sequential")),
        Mixing(algorithm="hf-interleave", stopping="all_exhausted"),
        seed=42,
    )
    assert answer["num_samples"] == mixture_drawer(mixture).num_samples_at(0)
    assert answer["sources"][0]["tokens_realised"] is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"sources": []}, "at least one source"),
        ({"sources": [{"name": "a", "length": 3, "weight": -1}]}, "weight"),
        ({"sources": [{"name": "a", "length": 3}], "color": 1}, "unknown mixture fields"),
        ({"sources": [{"name": "a", "length": 3, "weight": 1, "size": 2}]}, "unknown source"),
        ({"sources": [{"name": "a", "length": 3, "weight": 1, "file": "x.csv"}]}, "not both"),
        ({"sources": [{"name": "a", "file": "missing.parquet", "weight": 1}]}, "cannot read"),
        (
            {"sources": [{"name": "a", "file": "t.parquet", "length_column": "no", "weight": 1}]},
            "no column 'no'",
        ),
        (
            {"sources": [{"name": "a", "file": "t.parquet", "length_column": "s", "weight": 1}]},
            "should hold numbers",
        ),
        ({"sources": [{"name": "a", "length": 3, "weight": 1}], "mixing": {"block": 0}}, "block"),
        (
            {"sources": [{"name": "a", "length": 3, "weight": 1}], "mixing": {"unit": "tokens"}},
            "token lengths",
        ),
        ([1, 2], "JSON object"),
        ({"sources": [{"name": "a", "length": 3, "weight": 1}], "seed": "x"}, "'seed'"),
        ({"sources": [{"name": "a", "length": 3, "weight": 1}], "num_samples": 2.5}, "num_"),
        ({"sources": [{"name": "a", "length": 3, "weight": 1}], "mixing": [1]}, "'mixing'"),
        ({"sources": [{"name": "a", "length": 3, "weight": "7"}]}, "weight"),
    ],
)
def test_bad_mixture_files_exit_with_one_line(
    spec: object, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq.write_table(pa.table({"n": [1, 2], "s": ["a", "b"]}), tmp_path / "t.parquet")
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(spec))
    code, out, err = _run(["mix", str(path)], capsys)
    assert code == 1 and out == ""
    assert err.startswith("sampleplan mix: error:") and message in err, err
    assert len(err.strip().splitlines()) == 1
