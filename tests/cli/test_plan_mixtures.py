"""``sampleplan plan --source ... / --mixture FILE``: a mixture plan on a service, its
sources' requested and realised shares, passes and warnings as the service answers them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

import pytest

from sampleplan.cli import parse_source
from sampleplan.client import SamplePlanClient
from sampleplan.service.main import cli
from tests.helpers.servers import LiveServer


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_source_syntax() -> None:
    assert parse_source("web=ds:abc:7") == {"name": "web", "dataset_id": "abc", "weight": 7}
    assert parse_source("code=ds:abc:2.5:shuffle_seed=11") == {
        "name": "code",
        "dataset_id": "abc",
        "weight": 2.5,
        "order": {"shuffle_seed": 11},
    }
    assert parse_source("m=plan:f00:sequential:1") == {
        "name": "m",
        "plan_id": "f00",
        "order": "sequential",
        "weight": 1,
    }
    assert parse_source("web=ds:abc") == {"name": "web", "dataset_id": "abc"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--source", "web:abc"], "--source takes NAME=ds:DATASET_ID"),
        (["--source", "web=file:abc"], "--source takes NAME=ds:DATASET_ID"),
        (["--source", "web=ds:abc:heavy"], "what is 'heavy'"),
        (["--source", "web=ds:abc:1:2"], "what is '2'"),
        (["--source", "web=ds:abc", "--proportions", "hot"], "--proportions takes"),
        (["--source", "web=ds:abc"], "give its --url"),
        (["labels.csv", "--source", "web=ds:abc", "--url", "http://x"], "leave LABELS_FILE out"),
        ([], "give a LABELS_FILE"),
    ],
)
def test_bad_mixture_options_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["plan", *argv], capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def _cells(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("source "))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    return rows


def test_plan_from_sources_prints_the_services_shares(
    live_server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SamplePlanClient(live_server.url) as api:
        web = api.create_dataset([k % 4 for k in range(500)], lengths=[100] * 500).id
        code = api.create_dataset([k % 2 for k in range(200)], lengths=[300] * 200).id
        math = api.create_dataset([0, 1] * 10, lengths=[50] * 20).id
    argv = [
        "plan",
        "--source",
        f"web=ds:{web}:7",
        "--source",
        f"code=ds:{code}:2:shuffle_seed=11",
        "--source",
        f"math=ds:{math}:1:sequential",
        "--unit",
        "tokens",
        "--num-samples",
        "1000",
        "--url",
        live_server.url,
    ]
    code_, out, err = run(argv, capsys)
    assert code_ == 0, err
    with SamplePlanClient(live_server.url) as api:
        plan_id = out.split()[1]
        plan = api.get_plan(plan_id)
    assert plan.sources is not None and plan.config["mixing"]["unit"] == "tokens"
    rows = _cells(out)
    assert list(rows) == ["web", "code", "math"]
    for row in plan.sources:
        origin, length, requested, realised, tokens, samples, passes = rows[row.name]
        assert origin == f"ds:{row.dataset_id[:12]}" and length == f"{row.length:,}"
        assert requested == f"{100 * row.requested_share:.1f}%"
        assert realised == f"{100 * row.realised_share:.1f}%"
        assert tokens == f"{100 * row.realised_token_share:.1f}%"
        assert samples == f"{row.samples:,}" and passes == f"{row.passes:,.2f}"
    # Token shares are the requested ones (7:2:1 of tokens); math is taken many times over.
    assert abs(float(rows["web"][4][:-1]) - 70) < 1 and abs(float(rows["math"][4][:-1]) - 10) < 1
    assert plan.sources[2].passes > 4
    assert f"warning: {plan.sources[2].warning}" in out

    # The same mixture from a file names the same plan; --json prints the service's answer.
    spec = {
        "sources": [
            {"name": "web", "dataset_id": web, "weight": 7},
            {"name": "code", "dataset_id": code, "weight": 2, "order": {"shuffle_seed": 11}},
            {"name": "math", "dataset_id": math, "weight": 1, "order": "sequential"},
        ],
        "mixing": {"unit": "tokens"},
        "num_samples": 1000,
    }
    (tmp_path / "mix.json").write_text(json.dumps(spec))
    code_, out, err = run(
        ["plan", "--mixture", str(tmp_path / "mix.json"), "--json", "--url", live_server.url],
        capsys,
    )
    assert code_ == 0, err
    assert json.loads(out) == plan.raw


def test_temperature_from_the_command_line(
    live_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with SamplePlanClient(live_server.url) as api:
        ids = [api.create_dataset([i] * n).id for i, n in enumerate((800, 100, 27))]
        # A plan as a source: its size is its population's (the training part of a split).
        split = api.create_plan(dataset_id=ids[0], split={"lengths": [64, 736], "seed": 1})
    argv = ["plan", "--proportions", "3", "--mixing", "megatron-blend", "--url", live_server.url]
    for name, id_ in zip(("a", "b", "c"), ids, strict=True):
        argv += ["--source", f"{name}=ds:{id_}"]
    argv += ["--source", f"d=plan:{split.id}"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    rows = _cells(out)
    assert rows["d"][0] == f"plan:{split.id[:12]}" and rows["d"][1] == "800"
    # size ** (1/3) normalised (the formula written out here): 9.28, 4.64, 3 and 4.
    sizes = [800 ** (1 / 3), 100 ** (1 / 3), 27 ** (1 / 3), 64 ** (1 / 3)]
    for name, size in zip(("a", "b", "c", "d"), sizes, strict=True):
        assert rows[name][2] == f"{100 * size / sum(sizes):.1f}%"
    assert "megatron-blend by temperature 3" in out


def test_the_mixing_choices_are_the_cores() -> None:
    from sampleplan.cli import MIXING_CHOICES, STOPPING_CHOICES, UNIT_CHOICES
    from sampleplan.core.mixtures.spec import MIXING_NAMES, Stopping, Unit

    assert MIXING_CHOICES == MIXING_NAMES
    assert (get_args(Stopping), get_args(Unit)) == (STOPPING_CHOICES, UNIT_CHOICES)
