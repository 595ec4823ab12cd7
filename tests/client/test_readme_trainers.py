"""The guide's "Training frameworks" and "Elastic training and evaluation" snippets, run.

Lightning's and Accelerate's snippets (docs/how-to/trainers.md) and the Hugging Face
page's ``torchrun`` script (docs/how-to/hugging-face.md) need several processes:
``test_lightning.py``, ``test_accelerate.py`` and ``test_transformers_ddp.py`` run them
there (the Hugging Face page's other blocks run in ``tests/test_readme.py``). The others
run here, as written, with ``api``, ``plan`` and ``train_subset`` defined as the pages
say. Every block of the trainers and elastic pages is marked
``<!-- docs-test: runs in tests/client/test_readme_trainers.py -->`` (``tests/test_readme.py``
checks the marks).
"""

from __future__ import annotations

from typing import Any

import pytest

from sampleplan.client import Plan, SamplePlanClient
from tests.helpers import reference
from tests.helpers.datasets import (
    PLAN_CONFIG,
    Items,
    classic_stream,
    imbalanced_labels,
    train_subset,
)
from tests.helpers.docs_blocks import DOCS, RUN_BY_TRAINER_TESTS, blocks_under, python_blocks

N = 101
TRAINERS = DOCS / "how-to" / "trainers.md"
ELASTIC = DOCS / "how-to" / "elastic.md"
HUGGING_FACE = DOCS / "how-to" / "hugging-face.md"


@pytest.fixture(scope="module")
def dataset() -> Items:
    return Items(imbalanced_labels())


@pytest.fixture
def plan(client: SamplePlanClient, dataset: Items) -> Plan:
    return client.create_plan(labels=dataset.targets, **{**PLAN_CONFIG, "num_samples": N})


def _run(snippet: str, client: SamplePlanClient, plan: Plan, dataset: Items) -> dict[str, Any]:
    namespace: dict[str, Any] = {"api": client, "plan": plan, "train_subset": train_subset(dataset)}
    exec(snippet, namespace)
    return namespace


def test_every_framework_has_its_snippet() -> None:
    for heading in ("## Lightning", "## Accelerate", "## Plain DDP", "## torchdata"):
        assert len(blocks_under(TRAINERS, heading)) == 1, heading
    for heading in ("## Elastic resume", "## Exactly-once evaluation"):
        assert len(blocks_under(ELASTIC, heading)) == 1, heading
    # Each of them, and only they, carry the mark that keeps tests/test_readme.py off them.
    for page, count in ((TRAINERS, 4), (ELASTIC, 2)):
        blocks = python_blocks(page)
        assert len(blocks) == count and all(b.note == RUN_BY_TRAINER_TESTS for b in blocks)
    # The Hugging Face page: only its torchrun script runs elsewhere.
    marked = [b for b in python_blocks(HUGGING_FACE) if b.note == RUN_BY_TRAINER_TESTS]
    assert [b.section for b in marked] == ["Two processes with torchrun"]


def test_plain_ddp_snippet(client: SamplePlanClient, plan: Plan, dataset: Items) -> None:
    (snippet,) = blocks_under(TRAINERS, "## Plain DDP")
    namespace = _run(snippet, client, plan, dataset)
    assert namespace["sampler"].epoch == 1
    assert list(namespace["sampler"]) == classic_stream(dataset, 1, num_samples=N)


# torchdata 0.11 calls a torch function that torch 2.13 deprecates; not ours to fix.
@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
def test_torchdata_snippet(client: SamplePlanClient, plan: Plan, dataset: Items) -> None:
    (snippet,) = blocks_under(TRAINERS, "## torchdata")
    namespace = _run(snippet, client, plan, dataset)
    train = train_subset(dataset)
    where = {index: position for position, index in enumerate(train.indices)}
    seen = [where[int(i)] for x, _y in namespace["first"] + namespace["rest"] for i in x[:, 0]]
    assert seen == classic_stream(dataset, 0, num_samples=N)


def test_elastic_snippet(client: SamplePlanClient, plan: Plan, dataset: Items) -> None:
    (snippet,) = blocks_under(ELASTIC, "## Elastic resume")
    namespace = _run(snippet, client, plan, dataset)
    stream = classic_stream(dataset, 0, num_samples=N)
    taken, rest = namespace["taken"], namespace["rest"]
    assert namespace["state"]["global_position"] == 30
    assert [x for k in range(10) for share in taken for x in share[k : k + 1]] == stream[:30]
    # 71 left over 2 ranks: 36 each, the rest's first index padded onto rank 1.
    for rank, share in enumerate(rest):
        assert share == reference.distributed_shard(stream[30:], rank, 2)


def test_evaluation_snippet(client: SamplePlanClient, plan: Plan, dataset: Items) -> None:
    (snippet,) = blocks_under(ELASTIC, "## Exactly-once evaluation")
    namespace = _run(snippet, client, plan, dataset)
    permutation = reference.weighted_stream([1.0] * 7, 7, replacement=False, seed=0)
    assert namespace["shares"] == [permutation[r::3] for r in range(3)]
