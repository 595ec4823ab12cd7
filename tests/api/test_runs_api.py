"""``/v1/runs`` and schedules over HTTP: streams equal torch on weights computed here."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from tests.helpers import reference

LABELS = [0] * 30 + [1] * 6 + [2] * 12


def make_plan(api: TestClient, **config: object) -> str:
    response = api.post("/v1/plans", json={"labels": LABELS, "seed": 5, **config})
    assert response.status_code in (200, 201), response.text
    plan_id: str = response.json()["id"]
    return plan_id


def inverse_frequency() -> list[float]:
    counts = Counter(LABELS)
    return [1.0 / counts[t] for t in LABELS]


def test_schedule_weights_indices_and_table_follow_the_epoch(module_api: TestClient) -> None:
    plan_id = make_plan(
        module_api, schedule={"kind": "power", "start": 0.0, "end": 1.0, "epochs": 4}
    )
    counts = Counter(LABELS)
    for epoch in (0, 1, 3, 7):
        p = 0.0 + (1.0 - 0.0) * min(epoch, 4) / 4
        weights = [float(counts[t]) ** -p for t in LABELS]
        got = module_api.get(f"/v1/plans/{plan_id}/weights", params={"epoch": epoch}).json()
        assert got["weights"] == weights and got["epoch"] == epoch
        stream = reference.weighted_stream(weights, len(LABELS), True, 5 + epoch)
        page = module_api.get(
            f"/v1/plans/{plan_id}/indices", params={"epoch": epoch, "rank": 1, "world_size": 2}
        )
        assert page.json()["indices"] == reference.distributed_shard(stream, 1, 2)
        table = module_api.get(f"/v1/plans/{plan_id}", params={"epoch": epoch}).json()
        total = sum(weights)
        share = sum(w for w, t in zip(weights, LABELS, strict=True) if t == 1) / total
        assert table["epoch"] == epoch
        assert table["classes"][1]["expected_share"] == pytest.approx(share)
    report = module_api.get(f"/v1/plans/{plan_id}/report")
    assert report.status_code == 200 and "schedule-chart" in report.text


def test_dynamic_balance_lengths_follow_the_epoch(module_api: TestClient) -> None:
    plan_id = make_plan(module_api, schedule={"kind": "dynamic_balance", "lambda": 0.5})
    counts = Counter(LABELS)
    n_min = min(counts.values())
    for epoch in (0, 1, 2, 6):
        quotas = {
            c: int(min((n / n_min) ** (0.5**epoch), float("inf")) * n_min)
            for c, n in counts.items()
        }
        page = module_api.get(f"/v1/plans/{plan_id}/indices", params={"epoch": epoch}).json()
        assert page["length"] == sum(quotas.values())
        weights = [quotas[t] / counts[t] for t in LABELS]
        assert page["indices"] == reference.weighted_stream(
            weights, sum(quotas.values()), True, 5 + epoch
        )
        summary = module_api.get(
            f"/v1/plans/{plan_id}/indices/summary", params={"epoch": epoch}
        ).json()
        assert summary["length"] == sum(quotas.values())


@pytest.mark.parametrize(
    "schedule",
    [
        {"kind": "dynamic_balance", "lambda": 1.5},
        {"kind": "power", "epochs": 0},
        {"kind": "power", "epochs": "3"},
        {"kind": "nope"},
        "power",
    ],
)
def test_bad_schedules_are_422(module_api: TestClient, schedule: object) -> None:
    response = module_api.post("/v1/plans", json={"labels": LABELS, "schedule": schedule})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


def test_run_updates_from_ranks_in_any_order_give_the_same_weights(module_api: TestClient) -> None:
    plan_id = make_plan(module_api)
    updates = [
        {
            "epoch": 0,
            "rank": r,
            "step": s,
            "op": op,
            "alpha": 0.3 if op == "ema" else None,
            "indices": [r + 3 * s, 7, r],
            "values": [2.0 + r, 0.5 * (s + 1), 3.0],
        }
        for s in range(3)
        for r in range(3)
        for op in (("ema",) if (r + s) % 3 == 0 else ("mul",) if (r + s) % 3 == 1 else ("set",))
    ]
    # The expected weights, written out from the rule: order (step, rank, arrival).
    expected = inverse_frequency()
    for u in sorted(updates, key=lambda u: (u["step"], u["rank"])):
        for i, v in zip(u["indices"], u["values"], strict=True):
            if u["op"] == "set":
                expected[i] = v
            elif u["op"] == "mul":
                expected[i] = expected[i] * v
            else:
                expected[i] = (1.0 - u["alpha"]) * expected[i] + u["alpha"] * v
    results = []
    for attempt in range(2):
        run_id = f"shuffle-{attempt}"
        assert module_api.put(f"/v1/runs/{run_id}", json={"plan_id": plan_id}).status_code == 201
        assert module_api.put(f"/v1/runs/{run_id}", json={"plan_id": plan_id}).status_code == 200
        # Epoch 0 is the plan's weights; reading it freezes it, updates of epoch 0 still go.
        assert (
            module_api.get(f"/v1/runs/{run_id}/weights", params={"epoch": 0}).json()["weights"]
            == inverse_frequency()
        )
        shuffled = updates[:]
        random.Random(attempt).shuffle(shuffled)
        for u in shuffled:
            response = module_api.post(
                f"/v1/runs/{run_id}/updates", json={k: v for k, v in u.items() if v is not None}
            )
            assert response.status_code == 202, response.text
        weights = module_api.get(f"/v1/runs/{run_id}/weights", params={"epoch": 1}).json()[
            "weights"
        ]
        assert weights == expected
        page = module_api.get(f"/v1/runs/{run_id}/indices", params={"epoch": 1}).json()
        assert page["indices"] == reference.weighted_stream(expected, len(LABELS), True, 5 + 1)
        # Epoch 1 is frozen now: a late update of epoch 0 is refused, and changes nothing.
        late = module_api.post(
            f"/v1/runs/{run_id}/updates",
            json={"epoch": 0, "op": "set", "indices": [0], "values": [9.0]},
        )
        assert late.status_code == 409
        assert (
            module_api.get(f"/v1/runs/{run_id}/weights", params={"epoch": 1}).json()["weights"]
            == expected
        )
        info = module_api.get(f"/v1/runs/{run_id}").json()
        assert info["frozen_epochs"] == [0, 1] and info["updates"] == len(updates)
        results.append(weights)
    assert results[0] == results[1]


def test_run_bad_input(module_api: TestClient) -> None:
    plan_id = make_plan(module_api)
    other = make_plan(module_api, strategy="uniform")
    assert module_api.put("/v1/runs/bad", json={"plan_id": plan_id}).status_code == 201
    assert module_api.put("/v1/runs/bad", json={"plan_id": other}).status_code == 409
    assert module_api.put("/v1/runs/x", json={"plan_id": "0" * 64}).status_code == 404
    assert module_api.get("/v1/runs/nobody").status_code == 404
    assert (
        module_api.post(
            "/v1/runs/nobody/updates",
            json={"epoch": 0, "op": "set", "indices": [0], "values": [1.0]},
        ).status_code
        == 404
    )
    assert module_api.put("/v1/runs/" + "a" * 129, json={"plan_id": plan_id}).status_code == 422
    scheduled = make_plan(module_api, schedule={"kind": "power"})
    assert module_api.put("/v1/runs/sched", json={"plan_id": scheduled}).status_code == 422
    n = len(LABELS)
    bad = [
        {"epoch": 0, "op": "set", "indices": [n], "values": [1.0]},
        {"epoch": 0, "op": "set", "indices": [-1], "values": [1.0]},
        {"epoch": 0, "op": "set", "indices": [0, 1], "values": [1.0]},
        {"epoch": 0, "op": "set", "indices": [0], "values": [-1.0]},
        {"epoch": 0, "op": "set", "indices": [0], "values": ["nan"]},
        {"epoch": 0, "op": "set", "indices": [0.5], "values": [1.0]},
        {"epoch": 0, "op": "set", "indices": [True], "values": [1.0]},
        {"epoch": 0, "op": "ema", "alpha": 0.0, "indices": [0], "values": [1.0]},
        {"epoch": 0, "op": "ema", "alpha": 1.5, "indices": [0], "values": [1.0]},
        {"epoch": 0, "op": "ema", "indices": [0], "values": [1.0]},
        {"epoch": 0, "op": "set", "alpha": 0.5, "indices": [0], "values": [1.0]},
        {"epoch": 0, "op": "pow", "indices": [0], "values": [1.0]},
        {"epoch": -1, "op": "set", "indices": [0], "values": [1.0]},
        {"epoch": 0, "op": "set", "indices": list(range(n)), "values": [0.0] * n},
        {"epoch": 0, "op": "mul", "indices": list(range(n)), "values": [0.0] * n},
        {"epoch": 0, "op": "mul", "indices": [0, 0], "values": [1e300, 1e300]},
        {"epoch": 0, "op": "set", "indices": [0]},
    ]
    for body in bad:
        response = module_api.post(
            "/v1/runs/bad/updates",
            content=__import__("json").dumps(body).replace('"nan"', "NaN"),
            headers={"content-type": "application/json"},
        )
        assert 400 <= response.status_code < 500, (body, response.text)
        assert response.status_code != 404
        assert response.headers["content-type"].startswith("application/problem+json")
    assert module_api.get("/v1/runs/bad").json()["updates"] == 0
    assert (
        module_api.get("/v1/runs/bad/weights", params={"epoch": 1}).json()["weights"]
        == inverse_frequency()
    )


def test_runs_survive_a_restart(tmp_path: pytest.TempPathFactory) -> None:
    db = f"sqlite:///{tmp_path}/runs.sqlite3"  # type: ignore[operator]
    with TestClient(create_app(Settings(database_url=db))) as api:
        plan_id = make_plan(api, algorithm="hierarchical")
        api.put("/v1/runs/keep", json={"plan_id": plan_id})
        api.post(
            "/v1/runs/keep/updates",
            json={"epoch": 0, "op": "mul", "indices": [1, 2], "values": [4.0, 0.0]},
        )
        before = api.get(
            "/v1/runs/keep/indices", params={"epoch": 1, "offset": 3, "limit": 20}
        ).json()["indices"]
        api.post(
            "/v1/runs/keep/updates", json={"epoch": 1, "op": "set", "indices": [3], "values": [5.0]}
        )
    with TestClient(create_app(Settings(database_url=db))) as api:
        assert api.get("/v1/runs/keep").json()["frozen_epochs"] == [1]
        assert (
            api.get("/v1/runs/keep/indices", params={"epoch": 1, "offset": 3, "limit": 20}).json()[
                "indices"
            ]
            == before
        )
        weights = api.get("/v1/runs/keep/weights", params={"epoch": 2}).json()["weights"]
        expected = inverse_frequency()
        expected[1] *= 4.0
        expected[2] = 0.0
        expected[3] = 5.0
        assert weights == expected


def test_a_retried_update_is_applied_once(module_api: TestClient) -> None:
    plan_id = make_plan(module_api)
    module_api.put("/v1/runs/retry", json={"plan_id": plan_id})
    body = {"epoch": 0, "op": "mul", "indices": [4], "values": [3.0], "update_id": "u-1"}
    assert module_api.post("/v1/runs/retry/updates", json=body).status_code == 202
    assert module_api.post("/v1/runs/retry/updates", json=body).status_code == 202
    assert module_api.get("/v1/runs/retry").json()["updates"] == 1
    weights = module_api.get("/v1/runs/retry/weights", params={"epoch": 1}).json()["weights"]
    assert weights[4] == inverse_frequency()[4] * 3.0
    # A retry arriving after the freeze is still answered as the success it was.
    assert module_api.post("/v1/runs/retry/updates", json=body).status_code == 202
    bad_id = {**body, "update_id": "no spaces"}
    assert module_api.post("/v1/runs/retry/updates", json=bad_id).status_code == 422


def test_binary_updates_equal_json_updates(module_api: TestClient) -> None:
    import numpy as np

    plan_id = make_plan(module_api)
    for run_id in ("as-json", "as-binary"):
        module_api.put(f"/v1/runs/{run_id}", json={"plan_id": plan_id})
    json_body = {
        "epoch": 0,
        "step": 2,
        "op": "ema",
        "alpha": 0.25,
        "indices": [3, 9, 3],
        "values": [1.0, 2.0, 4.0],
    }
    assert module_api.post("/v1/runs/as-json/updates", json=json_body).status_code == 202
    content = np.array([3, 9, 3], "<i8").tobytes() + np.array([1.0, 2.0, 4.0], "<f8").tobytes()
    params = {"epoch": 0, "step": 2, "op": "ema", "alpha": 0.25}
    binary = module_api.post(
        "/v1/runs/as-binary/updates",
        params=params,
        content=content,
        headers={"content-type": "application/octet-stream"},
    )
    assert binary.status_code == 202, binary.text
    got = [
        module_api.get(f"/v1/runs/{r}/weights", params={"epoch": 1}).json()["weights"]
        for r in ("as-json", "as-binary")
    ]
    expected = inverse_frequency()
    for i, v in ((3, 1.0), (9, 2.0), (3, 4.0)):  # a repeated index applies once per occurrence
        expected[i] = 0.75 * expected[i] + 0.25 * v
    assert got[0] == got[1] == expected
    octet = {"content-type": "application/octet-stream"}
    for bad_params, bad_content in (
        (params, content[:-1]),
        ({"step": 1, "op": "set"}, content),
        ({**params, "epoch": "x"}, content),
        ({**params, "op": "nope"}, content),
        ({**params, "bogus": 1}, content),
    ):
        response = module_api.post(
            "/v1/runs/as-binary/updates", params=bad_params, content=bad_content, headers=octet
        )
        assert response.status_code == 422, response.text
    text = module_api.post(
        "/v1/runs/as-binary/updates", content=b"x", headers={"content-type": "text/plain"}
    )
    assert text.status_code == 415
    assert module_api.post(
        "/v1/runs/as-binary/updates", content=b"{", headers={"content-type": "application/json"}
    ).status_code in (400, 422)


def test_sample_with_a_schedule_answers_the_epoch(module_api: TestClient) -> None:
    schedule = {"kind": "power", "start": 0.0, "end": 1.0, "epochs": 2}
    body = {"labels": LABELS, "seed": 5, "schedule": schedule, "epoch": 1, "limit": 12}
    answer = module_api.post("/v1/sample", json=body).json()
    counts = Counter(LABELS)
    weights = [float(counts[t]) ** -0.5 for t in LABELS]
    assert answer["weights"] == weights
    assert answer["plan"]["epoch"] == 1
    assert answer["indices"] == reference.weighted_stream(weights, len(LABELS), True, 6)[:12]


def test_a_schedule_with_batching_or_another_strategy_is_422(module_api: TestClient) -> None:
    schedule = {"kind": "power"}
    batching = {"kind": "m_per_class", "m": 2, "batch_size": 4}
    for extra in ({"batching": batching}, {"strategy": "uniform"}):
        response = module_api.post(
            "/v1/plans", json={"labels": LABELS, "schedule": schedule, **extra}
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
