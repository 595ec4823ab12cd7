"""Mixture plans over HTTP (plan field ``sources``): each algorithm's stream against its
upstream definition, every stream feature, the answer's shares, storage and refusals."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from sampleplan.service.storage import store as store_module
from tests.helpers.mixtures import hf_interleave_stream, megatron_build_blending_indices

datasets = pytest.importorskip("datasets")

JSON_ARRAY = {"Accept": "application/json"}
BINARY = {"Accept": "application/octet-stream"}


def upload(api: TestClient, size: int, label: int = 0, lengths: list[int] | None = None) -> str:
    body: dict[str, Any] = {"labels": [label + (i % 3) for i in range(size)]}
    if lengths is not None:
        body["lengths"] = lengths
    response = api.post("/v1/datasets", json=body)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def create(api: TestClient, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = api.post("/v1/plans", json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def page(api: TestClient, plan_id: str, **params: Any) -> list[int]:
    response = api.get(f"/v1/plans/{plan_id}/indices", params=params, headers=JSON_ARRAY)
    assert response.status_code == 200, response.text
    return list(response.json()["indices"])


def epoch_stream(api: TestClient, plan_id: str, epoch: int = 0) -> list[int]:
    return page(api, plan_id, epoch=epoch)


@pytest.fixture(scope="module")
def sources(module_api: TestClient) -> dict[str, tuple[str, int]]:
    """Three datasets of different lengths: name -> (id, length)."""
    lengths = {"web": 37, "code": 19, "math": 8}
    return {
        name: (upload(module_api, n, label=i), n) for i, (name, n) in enumerate(lengths.items())
    }


# -- each algorithm against its upstream definition --------------------------------------


@pytest.mark.parametrize("stopping", ["first_exhausted", "all_exhausted"])
def test_hf_interleave_is_interleave_datasets_itself_every_epoch(
    module_api: TestClient, sources: dict[str, tuple[str, int]], stopping: str
) -> None:
    probabilities = [0.5, 0.3, 0.2]
    shuffle_seeds: list[int | None] = [None, 7, None]
    body = {
        "sources": [
            {
                "name": name,
                "dataset_id": sources[name][0],
                "weight": p,
                "order": "sequential" if s is None else {"shuffle_seed": s},
            }
            for name, p, s in zip(sources, probabilities, shuffle_seeds, strict=True)
        ],
        "mixing": {"algorithm": "hf-interleave", "stopping": stopping},
        "seed": 42,
    }
    answer = create(module_api, body)
    assert answer["config"]["num_samples"] is None
    assert answer["versions"]["algorithm_version"] == "hf-interleave-v1"
    lengths = [n for _, n in sources.values()]
    for epoch in (0, 1):
        expected = hf_interleave_stream(
            datasets, lengths, probabilities, shuffle_seeds, 42 + epoch, stopping
        )
        assert epoch_stream(module_api, answer["id"], epoch) == expected
        described = module_api.get(f"/v1/plans/{answer['id']}", params={"epoch": epoch}).json()
        assert described["num_samples"] == len(expected)


def test_megatron_blend_is_build_blending_indices_across_epochs(
    module_api: TestClient, sources: dict[str, tuple[str, int]]
) -> None:
    weights = [5.0, 3.0, 1.0]
    body = {
        "sources": [
            {"name": name, "dataset_id": sources[name][0], "weight": w, "order": "sequential"}
            for name, w in zip(sources, weights, strict=True)
        ],
        "mixing": {"algorithm": "megatron-blend"},
        "num_samples": 50,
    }
    answer = create(module_api, body)
    lengths = [n for _, n in sources.values()]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    index, sample_index = megatron_build_blending_indices(weights, 3 * 50)
    expected = [int(offsets[i] + k % lengths[i]) for i, k in zip(index, sample_index, strict=True)]
    got = [x for epoch in range(3) for x in epoch_stream(module_api, answer["id"], epoch)]
    assert got == expected
    # A page in the middle of epoch 2 without the pages before it.
    assert page(module_api, answer["id"], epoch=2, offset=17, limit=9) == expected[117:126]


def test_mixture_v1_pages_ranks_and_summaries_are_its_one_stream(
    module_api: TestClient, sources: dict[str, tuple[str, int]]
) -> None:
    from torch.utils.data import DistributedSampler

    body = {
        "sources": [
            {"name": "web", "dataset_id": sources["web"][0], "weight": 6},
            {"name": "code", "dataset_id": sources["code"][0], "weight": 3, "order": "sequential"},
            {"name": "math", "dataset_id": sources["math"][0], "weight": 1},
        ],
        "mixing": {"block": 10},
        "num_samples": 101,
        "seed": 3,
    }
    answer = create(module_api, body)
    plan_id = answer["id"]
    assert answer["versions"]["algorithm"] == "mixture-v1"
    assert answer["config"]["mixing"] == {
        "algorithm": "mixture-v1",
        "proportions": "weights",
        "unit": "samples",
        "block": 10,
    }
    # The same request names the same plan.
    assert create(module_api, body, status=200)["id"] == plan_id
    whole = [x for epoch in range(3) for x in epoch_stream(module_api, plan_id, epoch)]
    assert len(whole) == 303
    # Every aligned window of 10 positions holds 6, 3 and 1 of the sources.
    bounds = [0, 37, 56, 64]
    source_of = np.searchsorted(bounds, whole, side="right") - 1
    for w in range(30):
        window = source_of[10 * w : 10 * w + 10]
        assert np.bincount(window, minlength=3).tolist() == [6, 3, 1]
    # Pages at any offset, JSON and binary, are the stream.
    rng = np.random.default_rng(5)
    for _ in range(6):
        epoch, offset = int(rng.integers(0, 3)), int(rng.integers(0, 101))
        limit = int(rng.integers(1, 30))
        want = whole[101 * epoch + offset : 101 * epoch + min(101, offset + limit)]
        assert page(module_api, plan_id, epoch=epoch, offset=offset, limit=limit) == want
        same = page(module_api, plan_id, epoch=epoch, offset=offset, limit=limit, space="dataset")
        assert same == want  # a mixture's positions are dataset indices already
        raw = module_api.get(
            f"/v1/plans/{plan_id}/indices",
            params={"epoch": epoch, "offset": offset, "limit": limit},
            headers=BINARY,
        )
        assert np.frombuffer(raw.content, dtype="<i8").tolist() == want
    # Ranks: DistributedSampler's dealing of the epoch, with start, pad and drop_last.
    epoch1 = whole[101:202]
    for world in (2, 3):
        for rank in range(world):
            for drop_last in (False, True):
                sampler: DistributedSampler[int] = DistributedSampler(
                    list(range(101)),  # type: ignore[arg-type]
                    num_replicas=world,
                    rank=rank,
                    shuffle=False,
                    drop_last=drop_last,
                )
                want = [epoch1[i] for i in sampler]
                got = page(
                    module_api, plan_id, epoch=1, rank=rank, world_size=world, drop_last=drop_last
                )
                assert got == want
            rest = page(
                module_api, plan_id, epoch=1, rank=rank, world_size=world, start=40, pad="false"
            )
            assert rest == epoch1[40 + rank :: world]
    # Summaries: draws per source and the SHA-256 of the rank's stream.
    rank1 = page(module_api, plan_id, epoch=1, rank=1, world_size=2)
    summary = module_api.get(
        f"/v1/plans/{plan_id}/indices/summary", params={"epoch": 1, "rank": 1, "world_size": 2}
    ).json()
    assert summary["classes"] == ["web", "code", "math"]
    assert (
        summary["counts"]
        == np.bincount(np.searchsorted(bounds, rank1, side="right") - 1, minlength=3).tolist()
    )
    assert summary["sha256"] == hashlib.sha256(np.asarray(rank1, dtype="<i8").tobytes()).hexdigest()
    assert "tokens" not in summary
    head = module_api.head(f"/v1/plans/{plan_id}/indices", params={"epoch": 1, "limit": 7})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["X-Sampleplan-Stream-Length"] == "101"


def test_a_plan_source_gives_the_plans_stream_epochs_concatenated(
    module_api: TestClient, sources: dict[str, tuple[str, int]]
) -> None:
    source_plan = create(
        module_api, {"dataset_id": sources["code"][0], "num_samples": 7, "seed": 9}
    )
    body = {
        "sources": [
            {"name": "web", "dataset_id": sources["web"][0], "weight": 1},
            {"name": "balanced", "plan_id": source_plan["id"], "weight": 1},
        ],
        "mixing": {"block": 4},
        "num_samples": 40,
    }
    answer = create(module_api, body)
    row = answer["sources"][1]
    assert (row["plan_id"], row["dataset_id"], row["order"]) == (source_plan["id"], None, "plan")
    assert (row["length"], row["offset"], row["size"]) == (19, 37, 19)
    stream = epoch_stream(module_api, answer["id"])
    taken = [x - 37 for x in stream if x >= 37]
    plan_epochs = [
        x
        for epoch in range(4)
        for x in page(module_api, source_plan["id"], epoch=epoch, space="dataset")
    ]
    assert len(taken) == 20 and taken == plan_epochs[:20]


# -- the answer, tokens, warnings and the report -------------------------------------------


def test_shares_tokens_passes_and_warnings_in_the_answer_and_the_report(
    module_api: TestClient,
) -> None:
    rng = np.random.default_rng(1)
    long_lengths = [int(x) for x in rng.integers(100, 200, size=30)]
    short_lengths = [int(x) for x in rng.integers(1, 20, size=6)]
    long_id = upload(module_api, 30, lengths=long_lengths)
    short_id = upload(module_api, 6, lengths=short_lengths)
    body = {
        "sources": [
            {"name": "long", "dataset_id": long_id, "weight": 1},
            {"name": "short", "dataset_id": short_id, "weight": 1},
        ],
        "mixing": {"unit": "tokens", "block": 100},
        "num_samples": 1000,
    }
    answer = create(module_api, body)
    long_row, short_row = answer["sources"]
    assert long_row["total_tokens"] == sum(long_lengths)
    assert long_row["requested_share"] == short_row["requested_share"] == 0.5
    means = np.array([np.mean(long_lengths), np.mean(short_lengths)])
    q = 0.5 / means
    assert [long_row["sample_share"], short_row["sample_share"]] == pytest.approx(q / q.sum())
    assert long_row["samples"] + short_row["samples"] == 1000
    assert long_row["realised_token_share"] == pytest.approx(0.5, abs=0.01)
    assert short_row["passes"] == short_row["samples"] / 6 > 4
    assert short_row["warning"] and "short" in short_row["warning"]
    assert answer["warnings"] == [short_row["warning"]]
    summary = module_api.get(f"/v1/plans/{answer['id']}/indices/summary").json()
    stream = np.array(epoch_stream(module_api, answer["id"]))
    table = np.array(long_lengths + short_lengths, dtype=np.float64)
    assert summary["tokens"] == pytest.approx(
        [table[stream[stream < 30]].sum(), table[stream[stream >= 30]].sum()]
    )
    report = module_api.get(f"/v1/plans/{answer['id']}/report")
    assert report.status_code == 200
    assert "repeated data loses value" in report.text and "short" in report.text
    assert report.headers["Content-Security-Policy"].startswith("default-src 'none'")


@pytest.mark.parametrize("route", ["/weights", "/classes", "/batches", "/batches/summary"])
def test_routes_of_single_dataset_plans_refuse_a_mixture_with_a_reason(
    module_api: TestClient, sources: dict[str, tuple[str, int]], route: str
) -> None:
    body = {"sources": [{"name": "web", "dataset_id": sources["web"][0], "weight": 1}]}
    plan_id = create(module_api, body, status=201 if route == "/weights" else 200)["id"]
    response = module_api.get(f"/v1/plans/{plan_id}{route}")
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"].endswith("not-for-mixtures")
    assert "mixture" in problem["detail"]


# -- runs: source weights that change from the next epoch ---------------------------------


def run_page(api: TestClient, run_id: str, epoch: int) -> list[int]:
    response = api.get(f"/v1/runs/{run_id}/indices", params={"epoch": epoch}, headers=JSON_ARRAY)
    assert response.status_code == 200, response.text
    return list(response.json()["indices"])


def test_a_run_over_megatron_blend_changes_source_weights_from_the_next_epoch(
    module_api: TestClient, sources: dict[str, tuple[str, int]]
) -> None:
    weights = [5.0, 3.0, 1.0]
    body = {
        "sources": [
            {"name": name, "dataset_id": sources[name][0], "weight": w, "order": "sequential"}
            for name, w in zip(sources, weights, strict=True)
        ],
        "mixing": {"algorithm": "megatron-blend"},
        "num_samples": 30,
        "seed": 1,
    }
    plan_id = create(module_api, body)["id"]
    assert module_api.put("/v1/runs/blend", json={"plan_id": plan_id}).status_code == 201
    plan_epochs = [epoch_stream(module_api, plan_id, e) for e in range(3)]
    assert [run_page(module_api, "blend", e) for e in (0, 1)] == plan_epochs[:2]
    # During epoch 1: no more "web", and "math" weighs 4 (source positions, source weights).
    update = {"epoch": 1, "op": "set", "indices": [0, 2], "values": [0.0, 4.0]}
    answer = module_api.post("/v1/runs/blend/updates", json=update)
    assert answer.status_code == 202, answer.text
    got = module_api.get("/v1/runs/blend/weights", params={"epoch": 2}).json()
    assert got["weights"] == [0.0, 3.0, 4.0]
    epoch1 = module_api.get("/v1/runs/blend/weights", params={"epoch": 1}).json()
    assert epoch1["weights"] == weights
    epoch2 = run_page(module_api, "blend", 2)
    assert [run_page(module_api, "blend", e) for e in (0, 1)] == plan_epochs[:2]
    assert epoch_stream(module_api, plan_id, 2) == plan_epochs[2]  # the plan is unchanged
    # Which source: Megatron's build_blending_indices of the new weights at epoch 2's
    # positions; which element: each source's takes go on from epochs 0 and 1.
    lengths = [n for _, n in sources.values()]
    offsets = [0, lengths[0], lengths[0] + lengths[1]]
    index, _ = megatron_build_blending_indices([0.0, 3.0, 4.0], 90)
    assert [int(np.searchsorted(offsets, x, side="right")) - 1 for x in epoch2] == index[60:]
    before, _ = megatron_build_blending_indices(weights, 60)
    taken = [before.count(i) for i in range(3)]
    for i in (1, 2):
        mine = [x - offsets[i] for x in epoch2 if offsets[i] <= x < offsets[i] + lengths[i]]
        assert mine == [(taken[i] + k) % lengths[i] for k in range(len(mine))]
    assert module_api.get("/v1/runs/blend").json()["updates"] == 1
    bad = {"epoch": 2, "op": "set", "indices": [3], "values": [1.0]}
    refused = module_api.post("/v1/runs/blend/updates", json=bad)
    assert refused.status_code == 422 and "[0, 3)" in refused.json()["detail"]


def test_a_run_over_mixture_v1_is_its_plan_until_an_update(
    module_api: TestClient, sources: dict[str, tuple[str, int]]
) -> None:
    body = {
        "sources": [
            {"name": "web", "dataset_id": sources["web"][0]},
            {"name": "math", "dataset_id": sources["math"][0]},
        ],
        "mixing": {"proportions": {"temperature": 2.0}, "block": 9},
        "num_samples": 45,
    }
    plan = create(module_api, body)
    assert module_api.put("/v1/runs/v1-run", json={"plan_id": plan["id"]}).status_code == 201
    start = module_api.get("/v1/runs/v1-run/weights", params={"epoch": 0}).json()["weights"]
    assert start == pytest.approx([s["requested_share"] for s in plan["sources"]])
    assert [run_page(module_api, "v1-run", e) for e in range(3)] == [
        epoch_stream(module_api, plan["id"], e) for e in range(3)
    ]
    update = {"epoch": 2, "op": "mul", "indices": [1], "values": [0.0]}
    assert module_api.post("/v1/runs/v1-run/updates", json=update).status_code == 202
    assert all(x < 37 for x in run_page(module_api, "v1-run", 3))


# -- token lengths at upload ------------------------------------------------------------------


def test_length_column_of_every_table_format_gives_one_dataset(module_api: TestClient) -> None:
    labels = ["cat", "dog", "cat", "emu"]
    tokens = [12, 0, 7, 300]
    table = pa.table({"label": labels, "n": tokens})
    parquet = io.BytesIO()
    pq.write_table(table, parquet)
    arrow = io.BytesIO()
    with pa.ipc.new_stream(arrow, table.schema) as writer:
        writer.write_table(table)
    csv = "label,n\n" + "".join(f"{a},{b}\n" for a, b in zip(labels, tokens, strict=True))
    jsonl = "".join(
        json.dumps({"label": a, "n": b}) + "\n" for a, b in zip(labels, tokens, strict=True)
    )
    bodies = [
        (parquet.getvalue(), "application/vnd.apache.parquet"),
        (arrow.getvalue(), "application/vnd.apache.arrow.stream"),
        (csv.encode(), "text/csv"),
        (jsonl.encode(), "application/x-ndjson"),
    ]
    ids = set()
    for body, content_type in bodies:
        response = module_api.post(
            "/v1/datasets",
            params={"length_column": "n"},
            content=body,
            headers={"Content-Type": content_type},
        )
        assert response.status_code in (200, 201), response.text
        answer = response.json()
        assert answer["total_tokens"] == 319
        ids.add(answer["id"])
        labels_only = answer["labels_dataset_id"]
    assert len(ids) == 1
    (dataset_id,) = ids
    assert dataset_id != labels_only
    plain = module_api.post("/v1/datasets", json={"labels": labels}).json()
    assert plain["id"] == labels_only and "total_tokens" not in plain
    as_json = module_api.post("/v1/datasets", json={"labels": labels, "lengths": tokens}).json()
    assert as_json["id"] == dataset_id
    other = module_api.post("/v1/datasets", json={"labels": labels, "lengths": [1, 0, 7, 300]})
    assert other.json()["id"] not in (dataset_id, labels_only)
    got = module_api.get(f"/v1/datasets/{dataset_id}/lengths").json()
    assert got == {"dataset_id": dataset_id, "length": 4, "lengths": tokens}
    raw = module_api.get(f"/v1/datasets/{dataset_id}/lengths", headers=BINARY)
    assert np.frombuffer(raw.content, dtype="<i8").tolist() == tokens
    assert module_api.get(f"/v1/datasets/{labels_only}/lengths").status_code == 404
    assert module_api.get(f"/v1/datasets/{dataset_id}").json() == as_json
    # A plan over one dataset does not use the lengths: it is the labels' plan.
    plan = create(module_api, {"dataset_id": dataset_id}, status=201)
    assert plan["dataset_id"] == labels_only


@pytest.mark.parametrize(
    ("csv", "content_type", "words"),
    [
        ("label,n\ncat,-1\ndog,2\n", "text/csv", "token counts in"),
        ("label,n\ncat,1.5\ndog,2\n", "text/csv", "integers"),
        ("label,n\ncat,\ndog,2\n", "text/csv", "nulls"),
        ("label,m\ncat,1\ndog,2\n", "text/csv", "no column 'n'"),
        ('{"labels": ["cat", "dog"]}', "application/json", "tables only"),
    ],
)
def test_bad_length_columns_are_refused_and_nothing_is_stored(
    module_api: TestClient, csv: str, content_type: str, words: str
) -> None:
    response = module_api.post(
        "/v1/datasets",
        params={"length_column": "n"},
        content=csv.encode(),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]


# -- refusals ---------------------------------------------------------------------------------


def _refusals(ids: dict[str, str]) -> list[tuple[str, dict[str, Any], int, str]]:
    a, b, plan = ids["a"], ids["b"], ids["plan"]

    def two(**mixing: Any) -> dict[str, Any]:
        return {
            "sources": [
                {"name": "a", "dataset_id": a, "weight": 0.5},
                {"name": "b", "dataset_id": b, "weight": 0.5},
            ],
            "mixing": mixing,
        }

    def one(**source: Any) -> dict[str, Any]:
        return {"sources": [{"name": "a", **source}]}

    return [
        ("unknown dataset", one(dataset_id="f" * 64, weight=1), 404, "no dataset"),
        ("unknown plan", one(plan_id="f" * 64, weight=1), 404, "no plan"),
        ("negative weight", one(dataset_id=a, weight=-1), 422, ">= 0"),
        ("all zero", {**two(), "sources": [{"name": "a", "dataset_id": a, "weight": 0}]}, 422,
         "sum to a finite number > 0"),
        ("huge weights", {"sources": [{"name": "a", "dataset_id": a, "weight": 1e308},
                                      {"name": "b", "dataset_id": b, "weight": 1e308}]}, 422,
         "finite"),
        ("duplicate names", {"sources": [{"name": "a", "dataset_id": a, "weight": 1},
                                         {"name": "a", "dataset_id": b, "weight": 1}]}, 422,
         "unique"),
        ("empty sources", {"sources": []}, 422, "at least one source"),
        ("sources and labels", {**one(dataset_id=a, weight=1), "labels": [0, 1]}, 422,
         "no 'dataset_id' or 'labels'"),
        ("sources and dataset_id", {**one(dataset_id=a, weight=1), "dataset_id": a}, 422,
         "no 'dataset_id' or 'labels'"),
        ("sources and strategy", {**one(dataset_id=a, weight=1), "strategy": "uniform"}, 422,
         "'strategy'"),
        ("both ids", one(dataset_id=a, plan_id=plan, weight=1), 422, "exactly one"),
        ("neither id", one(weight=1), 422, "exactly one"),
        ("order on a plan source", one(plan_id=plan, weight=1, order="sequential"), 422,
         "no 'order'"),
        ("a mixture as a source", one(plan_id=ids["mixture"], weight=1), 422, "is a mixture"),
        ("num_samples with hf", {**two(algorithm="hf-interleave"), "num_samples": 10}, 422,
         "num_samples"),
        ("hf weights not summing to 1", {**two(algorithm="hf-interleave"),
                                         "sources": [{"name": "a", "dataset_id": a, "weight": 2},
                                                     {"name": "b", "dataset_id": b,
                                                      "weight": 1}]}, 422, "numpy"),
        ("stopping on mixture-v1", two(stopping="all_exhausted"), 422, "'stopping' only"),
        ("unit on megatron", two(algorithm="megatron-blend", unit="samples"), 422, "'unit' only"),
        ("block on hf", two(algorithm="hf-interleave", block=4), 422, "'block' only"),
        ("temperature 0", {**two(proportions={"temperature": 0.0}),
                           "sources": [{"name": "a", "dataset_id": a}]}, 422, "temperature"),
        ("block 0", two(block=0), 422, "block"),
        ("tokens without lengths", two(unit="tokens"), 422, "length_column"),
        ("unknown order", one(dataset_id=a, weight=1, order="backwards"), 422, "unknown order"),
        ("unknown algorithm", two(algorithm="roundrobin"), 422, "algorithm"),
        ("weight as a string", one(dataset_id=a, weight="1"), 422, "weight"),
        ("name as a number", {"sources": [{"name": 3, "dataset_id": a, "weight": 1}]}, 422,
         "name"),
        ("sources not a list", {"sources": {"name": "a"}}, 422, "sources"),
        ("huge num_samples", {**one(dataset_id=a, weight=1), "num_samples": 2**70}, 422,
         "num_samples"),
        ("huge seed", {**one(dataset_id=a, weight=1), "seed": 2**40}, 422, "seed"),
        ("weights with sizes", {**one(dataset_id=a, weight=1), "mixing": {"proportions": "sizes"}},
         422, "weight"),
        ("mixing without sources", {"dataset_id": a, "mixing": {}}, 422, "'mixing'"),
        ("too many sources", {"sources": [{"name": f"s{i}", "dataset_id": a, "weight": 1}
                                          for i in range(4097)]}, 422, "4096"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def refusal_ids(module_api: TestClient, sources: dict[str, tuple[str, int]]) -> dict[str, str]:
    """What the refused requests name: two datasets, a plan and a mixture plan."""
    a, b = sources["web"][0], sources["code"][0]
    plan = create(module_api, {"dataset_id": b, "seed": 123})["id"]
    mixture = create(
        module_api, {"sources": [{"name": "a", "dataset_id": a, "weight": 1}], "seed": 77}
    )["id"]
    return {"a": a, "b": b, "plan": plan, "mixture": mixture}


REFUSALS = [case[0] for case in _refusals({k: "" for k in ("a", "b", "plan", "mixture")})]


@pytest.mark.parametrize("what", REFUSALS)
def test_a_refused_mixture_is_a_problem_and_stores_nothing(
    module_api: TestClient, refusal_ids: dict[str, str], what: str
) -> None:
    (case,) = [c for c in _refusals(refusal_ids) if c[0] == what]
    _, body, status, words = case
    store = module_api.app.state.catalog.store  # type: ignore[attr-defined]

    def stored() -> tuple[int, tuple[int, int]]:
        with store.engine.connect() as conn:
            count = sa.select(sa.func.count()).select_from(store_module.mixture_plans)
            return int(conn.execute(count).scalar_one()), store.count()

    before = stored()
    response = module_api.post("/v1/plans", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    text = problem["detail"] + json.dumps(problem.get("errors"))
    assert words in text, text
    assert stored() == before


# -- storage -----------------------------------------------------------------------------------


def test_mixtures_survive_a_restart_on_either_database(database_url: str) -> None:
    from tests.storage.test_store import drop_everything

    drop_everything(database_url)
    settings = Settings(database_url=database_url)
    kinds = [
        {"algorithm": "mixture-v1", "block": 8},
        {"algorithm": "megatron-blend"},
        {"algorithm": "hf-interleave", "stopping": "all_exhausted"},
    ]
    before: dict[str, Any] = {}
    with TestClient(create_app(settings)) as api:
        a = upload(api, 23)
        b = upload(api, 11, lengths=list(range(11)))
        source_plan = create(api, {"dataset_id": a, "num_samples": 5})["id"]
        for mixing in kinds:
            hf = mixing["algorithm"] == "hf-interleave"
            body: dict[str, Any] = {
                "sources": [
                    {"name": "a", "dataset_id": a, "weight": 0.6},
                    {"name": "b", "dataset_id": b, "weight": 0.4},
                    {"name": "p", "plan_id": source_plan, "weight": 0.0},
                ][: 2 if hf else 3],
                "mixing": mixing,
                "seed": 5,
            }
            if not hf:
                body["num_samples"] = 30
            answer = create(api, body)
            before[answer["id"]] = (answer, [epoch_stream(api, answer["id"], e) for e in (0, 1)])
        first = next(iter(before))
        assert api.put("/v1/runs/mixed", json={"plan_id": first}).status_code == 201
        run_page(api, "mixed", 0)
        update = {"epoch": 0, "op": "set", "indices": [1, 2], "values": [2.0, 1.0]}
        assert api.post("/v1/runs/mixed/updates", json=update).status_code == 202
        run_streams = [run_page(api, "mixed", e) for e in (0, 1, 2)]
    with TestClient(create_app(settings)) as api:
        for plan_id, (answer, streams) in before.items():
            assert api.get(f"/v1/plans/{plan_id}").json() == answer
            assert [epoch_stream(api, plan_id, e) for e in (0, 1)] == streams
        assert [run_page(api, "mixed", e) for e in (0, 1, 2)] == run_streams
        assert run_streams[1] != before[first][1][1]  # the update changed epoch 1


def test_a_run_update_its_mixture_cannot_draw_by_is_refused_when_it_comes(
    module_api: TestClient, sources: dict[str, tuple[str, int]]
) -> None:
    # hf-interleave's all_exhausted never exhausts a source of weight 0 (Hugging Face
    # refuses such probabilities too): the update is refused, nothing is stored, and the
    # run's next epoch stays drawable.
    body = {
        "sources": [
            {"name": name, "dataset_id": sources[name][0], "weight": w}
            for name, w in zip(sources, [0.5, 0.25, 0.25], strict=True)
        ],
        "mixing": {"algorithm": "hf-interleave", "stopping": "all_exhausted"},
        "seed": 3,
    }
    plan_id = create(module_api, body)["id"]
    assert module_api.put("/v1/runs/exhausting", json={"plan_id": plan_id}).status_code == 201
    update = {"epoch": 0, "op": "set", "indices": [1], "values": [0.0]}
    refused = module_api.post("/v1/runs/exhausting/updates", json=update)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "all_exhausted" in refused.json()["detail"]
    assert module_api.get("/v1/runs/exhausting").json()["updates"] == 0
    assert run_page(module_api, "exhausting", 1) == epoch_stream(module_api, plan_id, 1)
