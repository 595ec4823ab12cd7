"""Record what a sampleplan server answers, to pin a release's database and streams.

Run against a server of the release being pinned (it speaks HTTP only, so it needs no
code of that release)::

    python tests/data/release-0.1.0/record.py http://127.0.0.1:8000 answers.json

The server's SQLite database, copied after this script, and ``answers.json`` are the
fixture of ``tests/storage/test_previous_release.py``: a newer release opens the
database and must answer the same plans, weights and streams.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx

STRINGS = ["cat"] * 40 + ["dog"] * 12 + ["emu"] * 5 + ["yak"] * 2
INTS = [i % 7 if i % 3 else 0 for i in range(120)]
SETS = [["cat", "dog"], ["cat"], ["cat"], ["cat", "emu"], ["dog"], []] * 12

PLANS: dict[str, dict[str, Any]] = {
    "torch-split": {"labels": STRINGS, "split": {"fractions": [0.7, 0.3], "seed": 42}, "seed": 0},
    "torch-sqrt-no-replacement": {
        "labels": INTS,
        "strategy": "inverse_sqrt_frequency",
        "replacement": False,
        "num_samples": 50,
        "seed": 3,
    },
    "effective-number": {"labels": INTS, "strategy": "effective_number", "beta": 0.99, "seed": 5},
    "hierarchical": {"labels": STRINGS, "algorithm": "hierarchical", "num_samples": 200, "seed": 9},
    "repeat-factor": {"labels": SETS, "strategy": "repeat_factor", "threshold": 0.5, "seed": 11},
    "label-sets-stratified": {
        "labels": SETS,
        "label_reduce": "max",
        "split": {"fractions": [0.8, 0.2], "seed": 1, "stratify": True},
        "seed": 2,
    },
    "schedule": {
        "labels": STRINGS,
        "schedule": {"kind": "power", "start": 0.0, "end": 1.0, "epochs": 4},
        "seed": 4,
    },
    "m-per-class": {
        "labels": STRINGS,
        "batching": {"kind": "m_per_class", "m": 4, "batch_size": 16},
        "seed": 6,
    },
    "class-quota": {
        "labels": STRINGS,
        "batching": {"kind": "class_quota", "quota": {"cat": 2, "dog": 1, "emu": 1}},
        "seed": 7,
    },
}

STREAMS = [
    {"epoch": 0},
    {"epoch": 1, "rank": 1, "world_size": 3},
    {"epoch": 2, "offset": 5, "limit": 17, "space": "dataset"},
    {"epoch": 3, "rank": 0, "world_size": 4, "drop_last": "true"},
]


def main(url: str, out: str) -> None:
    answers: dict[str, Any] = {"plans": {}, "runs": {}}
    with httpx.Client(base_url=url, timeout=60) as http:
        for name, body in PLANS.items():
            created = http.post("/v1/plans", json=body)
            if created.status_code >= 400:
                print(name, created.status_code, created.text, file=sys.stderr)
                continue
            plan = created.json()
            record: dict[str, Any] = {"request": body, "plan": plan}
            plan_id = plan["id"]
            record["weights"] = http.get(f"/v1/plans/{plan_id}/weights").json()
            if body.get("batching"):
                record["batches"] = [
                    {
                        "query": q,
                        "answer": http.get(f"/v1/plans/{plan_id}/batches", params=q).json(),
                    }
                    for q in ({"epoch": 0}, {"epoch": 1, "rank": 1, "world_size": 2})
                ]
            else:
                record["streams"] = [
                    {
                        "query": q,
                        "answer": http.get(f"/v1/plans/{plan_id}/indices", params=q).json(),
                    }
                    for q in STREAMS
                ]
            answers["plans"][name] = record
        # A run: epoch 0 drawn, updates sent during it, epoch 1 frozen from them.
        plan_id = answers["plans"]["torch-split"]["plan"]["id"]
        run = "release-0-1-0-run"
        http.put(f"/v1/runs/{run}", json={"plan_id": plan_id}).raise_for_status()
        http.get(f"/v1/runs/{run}/indices", params={"epoch": 0}).raise_for_status()
        for step, (op, extra, indices, values) in enumerate(
            [
                ("mul", {}, [0, 1, 2, 40], [2.0, 0.5, 3.0, 4.0]),
                ("ema", {"alpha": 0.25}, [3, 4, 5], [1.0, 9.0, 0.1]),
                ("set", {}, [10, 11], [0.0, 7.5]),
            ]
        ):
            update = {"epoch": 0, "step": step, "op": op, "indices": indices, "values": values}
            http.post(f"/v1/runs/{run}/updates", json={**update, **extra}).raise_for_status()
        answers["runs"][run] = {
            "plan_id": plan_id,
            "weights": [
                http.get(f"/v1/runs/{run}/weights", params={"epoch": e}).json() for e in (0, 1)
            ],
            "streams": [
                {"query": q, "answer": http.get(f"/v1/runs/{run}/indices", params=q).json()}
                for q in ({"epoch": 0}, {"epoch": 1}, {"epoch": 1, "rank": 1, "world_size": 2})
            ],
        }
        # Last: reading epoch 1 above froze it.
        answers["runs"][run]["run"] = http.get(f"/v1/runs/{run}").json()
    with open(out, "w") as handle:
        json.dump(answers, handle, indent=1, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
