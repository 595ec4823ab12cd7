"""Examples shown in the API docs: requests to try, and what the service answers to them.

They fit together, so that a newcomer can try every endpoint from ``/docs`` in order:
``POST /v1/datasets`` or ``POST /v1/plans`` with the first example creates the dataset
``DATASET_ID`` and the plan ``PLAN_ID`` that the other operations' path examples name.
``tests/api/test_openapi.py`` sends every request example and checks that the service
answers what the response examples show (all but ``versions``, which name this machine's
torch and numpy).
"""

from __future__ import annotations

from typing import Any

#: Fifteen labels in sample order: an imbalanced toy dataset.
LABELS: list[str] = ["cat"] * 10 + ["dog"] * 3 + ["emu"] * 2

DATASET_CREATE: dict[str, Any] = {"labels": LABELS}

PLAN_CREATE: dict[str, Any] = {
    "labels": LABELS,
    "split": {"fractions": [0.7, 0.3], "seed": 42},
    "seed": 0,
}

#: A batch plan over the same labels: two cats, a dog and an emu in every batch.
BATCH_PLAN_CREATE: dict[str, Any] = {
    "labels": LABELS,
    "batching": {"kind": "class_quota", "quota": {"cat": 2, "dog": 1, "emu": 1}},
    "seed": 0,
}

SAMPLE_REQUEST: dict[str, Any] = {"labels": [0, 0, 0, 0, 1, 1, 2], "seed": 0}

VERSIONS: dict[str, str] = {
    "algorithm": "torch",
    "algorithm_version": "torch-multinomial-v1",
    "torch": "2.13.0+cpu",
    "numpy": "2.4.6",
    "machine": "x86_64",
    "sampleplan": "0.1.0",
}

DATASET_ID = "a26a85b3de53bf57ead2ba3c58ade0cfa56a01192bb92df51ac936ac77350f21"

MIXTURE_PLAN_CREATE: dict[str, Any] = {
    "sources": [
        {"name": "web", "dataset_id": DATASET_ID, "weight": 7},
        {"name": "code", "dataset_id": DATASET_ID, "weight": 3, "order": {"shuffle_seed": 11}},
    ],
    "mixing": {"algorithm": "mixture-v1", "block": 100},
    "num_samples": 1000,
    "seed": 0,
}

DATASET: dict[str, Any] = {
    "id": "a26a85b3de53bf57ead2ba3c58ade0cfa56a01192bb92df51ac936ac77350f21",
    "size": 15,
    "label_type": "str",
    "num_classes": 3,
    "classes": ["cat", "dog", "emu"],
    "counts": [10, 3, 2],
    "multi_label": False,
    "unlabelled": None,
    "label_cardinality": None,
}

CODES: dict[str, Any] = {
    "dataset_id": DATASET_ID,
    "length": 15,
    "codes": [0] * 10 + [1] * 3 + [2] * 2,
}

PLAN_ID = "e7a3f2290d9f33e7511dd221b60e89bfba753b39619dcb86fd00c1a6a0fd44bb"

PLAN: dict[str, Any] = {
    "id": "e7a3f2290d9f33e7511dd221b60e89bfba753b39619dcb86fd00c1a6a0fd44bb",
    "dataset_id": "a26a85b3de53bf57ead2ba3c58ade0cfa56a01192bb92df51ac936ac77350f21",
    "config": {
        "strategy": "inverse_frequency",
        "split": {"seed": 42, "fractions": [0.7, 0.3]},
        "num_samples": 11,
        "replacement": True,
        "seed": 0,
        "algorithm": "torch",
    },
    "epoch": 0,
    "population_size": 11,
    "num_samples": 11,
    "classes": [
        {
            "class": "cat",
            "count": 6,
            "class_weight": 0.16666666666666666,
            "data_share": 0.5454545454545454,
            "expected_share": 0.33333333333333337,
            "expected_draws": 3.666666666666667,
            "expected_distinct_samples": 2.800428428332216,
            "expected_coverage": 0.46673807138870266,
            "mean_repeats_per_drawn_sample": 1.3093234697843485,
        },
        {
            "class": "dog",
            "count": 3,
            "class_weight": 0.3333333333333333,
            "data_share": 0.2727272727272727,
            "expected_share": 0.33333333333333337,
            "expected_draws": 3.666666666666667,
            "expected_distinct_samples": 2.178810272913497,
            "expected_coverage": 0.7262700909711657,
            "mean_repeats_per_drawn_sample": 1.6828756097994773,
        },
        {
            "class": "emu",
            "count": 2,
            "class_weight": 0.5,
            "data_share": 0.18181818181818182,
            "expected_share": 0.33333333333333337,
            "expected_draws": 3.666666666666667,
            "expected_distinct_samples": 1.7308240285169239,
            "expected_coverage": 0.8654120142584619,
            "mean_repeats_per_drawn_sample": 2.1184514463948663,
        },
    ],
    "epoch_coverage": {
        "expected_distinct_samples": 6.710062729762637,
        "expected_coverage": 0.6100057027056942,
        "mean_repeats_per_drawn_sample": 1.6393289367041606,
        "exact": True,
    },
    "label_sets": None,
    "versions": VERSIONS,
}

#: ``GET /v1/plans/{PLAN_ID}/classes``: the example plan's table, in one page.
CLASSES: dict[str, Any] = {
    "plan_id": PLAN_ID,
    "epoch": 0,
    "total": 3,
    "offset": 0,
    "limit": 1000,
    "classes": PLAN["classes"],
    "next": None,
}

WEIGHTS: dict[str, Any] = {
    "plan_id": "e7a3f2290d9f33e7511dd221b60e89bfba753b39619dcb86fd00c1a6a0fd44bb",
    "epoch": 0,
    "length": 11,
    "weights": [
        0.3333333333333333,
        0.3333333333333333,
        0.16666666666666666,
        0.5,
        0.16666666666666666,
        0.16666666666666666,
        0.16666666666666666,
        0.3333333333333333,
        0.16666666666666666,
        0.5,
        0.16666666666666666,
    ],
}

INDICES: dict[str, Any] = {
    "plan_id": "e7a3f2290d9f33e7511dd221b60e89bfba753b39619dcb86fd00c1a6a0fd44bb",
    "epoch": 0,
    "rank": 0,
    "world_size": 1,
    "offset": 0,
    "length": 11,
    "space": "population",
    "start": 0,
    "pad": True,
    "drop_last": False,
    "indices": [10, 7, 4, 9, 7, 9, 1, 3, 6, 3, 4],
}

STREAM_SUMMARY: dict[str, Any] = {
    "plan_id": "e7a3f2290d9f33e7511dd221b60e89bfba753b39619dcb86fd00c1a6a0fd44bb",
    "epoch": 0,
    "rank": 0,
    "world_size": 1,
    "space": "population",
    "length": 11,
    "classes": ["cat", "dog", "emu"],
    "counts": [4, 3, 4],
    "sha256": "40bf2bc352b759697d218c0fa4720fa9b03f7ea65255526e5cbf7f80f2bfddd9",
    "versions": VERSIONS,
}

BATCH_PLAN_ID = "f3425e6a44fc4cccb6a83f07bfec8b6af473ed446367375ae2bbc55dfb14e1d6"

BATCHES: dict[str, Any] = {
    "plan_id": BATCH_PLAN_ID,
    "epoch": 0,
    "rank": 0,
    "world_size": 1,
    "offset": 0,
    "length": 3,
    "batch_size": 4,
    "space": "population",
    "batches": [[9, 3, 12, 13], [8, 1, 10, 14], [6, 5, 11, 13]],
}

BATCH_SUMMARY: dict[str, Any] = {
    "plan_id": BATCH_PLAN_ID,
    "epoch": 0,
    "rank": 0,
    "world_size": 1,
    "space": "population",
    "num_batches": 3,
    "batch_size": 4,
    "classes": ["cat", "dog", "emu"],
    "counts": [6, 3, 3],
    "sha256": "fae23489d9a1e34b384334a1071fa8e108ce533adfcebbdd5a6e2f536a9aeb10",
    "versions": {**VERSIONS, "batches": "batches-v1"},
}

SAMPLE: dict[str, Any] = {
    "plan": {
        "id": "a26a17ba94f1fc81c5384393e8b3acdd6605fd05efa6437dca4a493edaed2079",
        "dataset_id": "937538a4e08d3915017a3f2907d0515f6cdde7787c26532a92e93559cbf548ff",
        "config": {
            "strategy": "inverse_frequency",
            "split": None,
            "num_samples": 7,
            "replacement": True,
            "seed": 0,
            "algorithm": "torch",
        },
        "epoch": 0,
        "population_size": 7,
        "num_samples": 7,
        "classes": [
            {
                "class": 0,
                "count": 4,
                "class_weight": 0.25,
                "data_share": 0.5714285714285714,
                "expected_share": 0.3333333333333333,
                "expected_draws": 2.333333333333333,
                "expected_distinct_samples": 1.8245952869584474,
                "expected_coverage": 0.45614882173961185,
                "mean_repeats_per_drawn_sample": 1.2788224051718005,
            },
            {
                "class": 1,
                "count": 2,
                "class_weight": 0.5,
                "data_share": 0.2857142857142857,
                "expected_share": 0.3333333333333333,
                "expected_draws": 2.333333333333333,
                "expected_distinct_samples": 1.441836705532693,
                "expected_coverage": 0.7209183527663465,
                "mean_repeats_per_drawn_sample": 1.61830623702375,
            },
            {
                "class": 2,
                "count": 1,
                "class_weight": 1.0,
                "data_share": 0.14285714285714285,
                "expected_share": 0.3333333333333333,
                "expected_draws": 2.333333333333333,
                "expected_distinct_samples": 0.9414723365340649,
                "expected_coverage": 0.9414723365340649,
                "mean_repeats_per_drawn_sample": 2.47838756677999,
            },
        ],
        "epoch_coverage": {
            "expected_distinct_samples": 4.207904329025205,
            "expected_coverage": 0.6011291898607436,
            "mean_repeats_per_drawn_sample": 1.6635359201765896,
            "exact": True,
        },
        "label_sets": None,
        "versions": VERSIONS,
    },
    "counts": [4, 2, 1],
    "epoch": 0,
    "rank": 0,
    "world_size": 1,
    "offset": 0,
    "space": "population",
    "length": 7,
    "indices": [6, 6, 4, 6, 5, 6, 2],
    "weights": [0.25, 0.25, 0.25, 0.25, 0.5, 0.5, 1.0],
}


#: The start of a report page (the whole page is a few kilobytes of HTML and inline SVG).
REPORT_HTML = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n…'
    f"<h1>Sampling plan <code>{PLAN_ID}</code></h1>…"
    '<svg class="chart" …><g class="class-bars" data-class="cat">…</g>…</svg>…'
)

# -- as FastAPI takes them ----------------------------------------------------------------


def openapi_example(summary: str, value: Any, description: str | None = None) -> dict[str, Any]:
    """One named example of a request body or parameter, as OpenAPI writes it."""
    out: dict[str, Any] = {"summary": summary, "value": value}
    if description is not None:
        out["description"] = description
    return out


BATCH_PLAN_ID_EXAMPLES = {
    "example": openapi_example(
        "The example batch plan",
        BATCH_PLAN_ID,
        "Created by POST /v1/plans with its 'batches' example.",
    )
}
PLAN_ID_EXAMPLES = {
    "example": openapi_example(
        "The example plan", PLAN_ID, "Created by POST /v1/plans with its first example."
    )
}
DATASET_ID_EXAMPLES = {
    "example": openapi_example(
        "The example dataset", DATASET_ID, "Created by POST /v1/datasets with its example."
    )
}


#: A label-set dataset (issue 10): four samples, one with no label.
LABEL_SETS_CREATE: dict[str, Any] = {"labels": [["cat"], ["cat", "dog"], [], ["emu", "cat"]]}
LABEL_SETS_ID = "24540d965b4d0d5fdc432386aeaa03b1c7ea5e727d79cdbbc6c62be02731f49b"

LABEL_SETS_ID_EXAMPLES = {
    "example": openapi_example(
        "The example label-set dataset",
        LABEL_SETS_ID,
        "Created by POST /v1/datasets with its 'Label sets' example.",
    )
}

OFFSETS: dict[str, Any] = {"dataset_id": LABEL_SETS_ID, "length": 5, "offsets": [0, 1, 3, 3, 5]}

#: The example dataset's labels with token lengths (``DATASET_WITH_LENGTHS_CREATE``).
LENGTHS_DATASET_ID = "a0957563ceea520efdeb82db318778e45e8ad62501a993a5730a4ac6bea52f6e"

LENGTHS: dict[str, Any] = {
    "dataset_id": LENGTHS_DATASET_ID,
    "length": 15,
    "lengths": [512, 130, 77, 1024, 300, 41, 980, 66, 250, 8, 700, 120, 33, 410, 95],
}

DATASET_WITH_LENGTHS_CREATE: dict[str, Any] = {"labels": LABELS, "lengths": LENGTHS["lengths"]}

LENGTHS_ID_EXAMPLES = {
    "example": openapi_example(
        "The example dataset with token lengths",
        LENGTHS_DATASET_ID,
        "Created by POST /v1/datasets with its 'Token lengths' example.",
    )
}


RUN_ID = "example-run"

RUN_ID_EXAMPLES = {
    "example": openapi_example(
        "The example run", RUN_ID, "Created by PUT /v1/runs/example-run with its example."
    )
}

RUN_CREATE: dict[str, Any] = {"plan_id": PLAN_ID}

RUN: dict[str, Any] = {"id": RUN_ID, "plan_id": PLAN_ID, "frozen_epochs": [], "updates": 0}

RUN_UPDATE: dict[str, Any] = {
    "epoch": 0,
    "rank": 0,
    "step": 0,
    "op": "ema",
    "alpha": 0.5,
    "indices": [3, 9],
    "values": [2.0, 0.25],
}

RUN_UPDATED: dict[str, Any] = {**RUN, "updates": 1}

RUN_WEIGHTS: dict[str, Any] = {
    "run_id": RUN_ID,
    "plan_id": PLAN_ID,
    "epoch": 0,
    "length": WEIGHTS["length"],
    "weights": WEIGHTS["weights"],
}

RUN_INDICES: dict[str, Any] = {**INDICES, "run_id": RUN_ID}
