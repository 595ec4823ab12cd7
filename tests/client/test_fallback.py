"""The offline fallback: the same stream from the local cache, or a clear refusal."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from sampleplan.client import (
    CacheError,
    Plan,
    PlanCache,
    RemoteWeightedSampler,
    SamplePlanClient,
    ServerError,
    StreamMismatchError,
    TransportError,
    default_cache_dir,
)
from sampleplan.core.hierarchical import HierarchicalTable
from sampleplan.core.splitting import split_from_canonical
from tests.helpers import reference
from tests.helpers.datasets import (
    PLAN_CONFIG,
    Items,
    classic_stream,
    imbalanced_labels,
    train_subset,
)
from tests.helpers.servers import LiveServer


@pytest.fixture(scope="module")
def dataset() -> Items:
    return Items(imbalanced_labels())


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[SamplePlanClient]:
    # One quick retry: these tests stop the service on purpose.
    with SamplePlanClient(live_server.url, retries=1, backoff=0.0, timeout=5.0) as client:
        yield client


@pytest.fixture
def plan(api: SamplePlanClient, dataset: Items) -> Plan:
    return api.create_plan(labels=dataset.targets, **PLAN_CONFIG)


def _edit_cached_plan(cache: Path, plan_id: str, edit: dict[str, Any]) -> None:
    path = cache / "plans" / plan_id / "plan.json"
    data = json.loads(path.read_text())
    for key, value in edit.items():
        section, field = key.split(".")
        data[section][field] = value
    path.write_text(json.dumps(data))


def test_service_stopped_mid_epoch_the_epoch_finishes_from_the_cache(
    live_server: LiveServer,
    api: SamplePlanClient,
    plan: Plan,
    dataset: Items,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sampler = RemoteWeightedSampler(plan.id, api, chunk_size=25)
    iterator = iter(sampler)
    before = [next(iterator) for _ in range(60)]
    live_server.stop()
    with caplog.at_level(logging.WARNING, logger="sampleplan.client"):
        after = list(iterator)
    assert before + after == classic_stream(dataset, 0)
    assert "drawing the rest of epoch 0" in caplog.text and "from the local cache" in caplog.text
    # Later epochs, and a resumed one, come from the cache too.
    sampler.set_epoch(1)
    assert list(sampler) == classic_stream(dataset, 1)
    sampler.load_state_dict({**sampler.state_dict(), "epoch": 2, "position": 100})
    assert list(sampler) == classic_stream(dataset, 2)[100:]


def test_space_dataset_and_sharding_offline(
    live_server: LiveServer, api: SamplePlanClient, plan: Plan, dataset: Items
) -> None:
    samplers = [
        RemoteWeightedSampler(
            plan.id, api, epoch=5, rank=r, world_size=3, space="dataset", chunk_size=16
        )
        for r in range(3)
    ]
    live_server.stop()
    train = train_subset(dataset)
    stream = [train.indices[i] for i in classic_stream(dataset, 5)]
    for rank, sampler in enumerate(samplers):
        assert list(sampler) == reference.distributed_shard(stream, rank, 3)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"versions.torch": "1.13.1"}, "drawn with torch 1.13.1, this is torch 2."),
        ({"versions.machine": "riscv64"}, "drawn on CPU architecture 'riscv64'"),
        (
            {"versions.algorithm_version": "torch-multinomial-v0"},
            "defined by 'torch-multinomial-v0'",
        ),
        (
            {"config.algorithm": "alias", "versions.algorithm": "alias"},
            "uses algorithm 'alias', which this client cannot reproduce offline",
        ),
    ],
)
def test_a_plan_this_machine_cannot_reproduce_is_refused(
    live_server: LiveServer,
    api: SamplePlanClient,
    plan: Plan,
    private_cache: Path,
    edit: dict[str, Any],
    message: str,
) -> None:
    sampler = RemoteWeightedSampler(plan.id, api, chunk_size=25)
    _edit_cached_plan(private_cache, plan.id, edit)
    iterator = iter(sampler)
    first = [next(iterator) for _ in range(30)]
    assert len(first) == 30
    live_server.stop()
    with pytest.raises(StreamMismatchError, match=message) as info:
        list(iterator)
    # The refusal says why the service was not asked.
    assert isinstance(info.value.__cause__, TransportError)


_SAMPLE_WEIGHTS = [float(w) for w in np.random.default_rng(11).uniform(0.0, 3.0, 415)]


@pytest.mark.parametrize(
    ("config", "mode"),
    [
        ({**PLAN_CONFIG, "algorithm": "hierarchical", "num_samples": 300}, "class"),
        (
            {
                "strategy": "sample_weights",
                "weights": _SAMPLE_WEIGHTS,
                "split": {"lengths": [350, 65], "seed": 3},
                "seed": 2**32 - 1,
                "algorithm": "hierarchical",
            },
            "sample",
        ),
    ],
    ids=["class-mode-split", "sample-mode-split"],
)
def test_hierarchical_offline_is_the_services_stream(
    live_server: LiveServer,
    api: SamplePlanClient,
    dataset: Items,
    private_cache: Path,
    config: dict[str, Any],
    mode: str,
) -> None:
    plan = api.create_plan(labels=dataset.targets, **config)
    assert plan.algorithm == "hierarchical" and plan.config["split"] is not None
    # Both table modes are covered: per class, and the alias table over samples.
    split = split_from_canonical(plan.config["split"])
    assert split is not None
    population = split.training_indices(len(dataset))
    codes = api.codes(plan.dataset_id)
    np.testing.assert_array_equal(codes, dataset.targets)  # classes 0, 1, 2 sort as themselves
    assert HierarchicalTable.build(codes[population], api.weights(plan.id)).mode == mode
    # What the service serves, fetched before it stops.
    served = {epoch: api.indices(plan.id, epoch=epoch).tolist() for epoch in (0, 1)}
    shards = [
        api.indices(plan.id, epoch=4, rank=r, world_size=3, space="dataset").tolist()
        for r in range(3)
    ]
    sampler = RemoteWeightedSampler(plan.id, api, chunk_size=25)
    sharded = [
        RemoteWeightedSampler(
            plan.id, api, epoch=4, rank=r, world_size=3, space="dataset", chunk_size=16
        )
        for r in range(3)
    ]
    assert "codes.npy" in os.listdir(private_cache / "plans" / plan.id)
    iterator = iter(sampler)
    before = [next(iterator) for _ in range(60)]
    live_server.stop()
    after = list(iterator)
    assert before + after == served[0]
    sampler.set_epoch(1)
    assert list(sampler) == served[1]
    sampler.load_state_dict({**sampler.state_dict(), "epoch": 1, "position": 111})
    assert list(sampler) == served[1][111:]
    for rank, shard_sampler in enumerate(sharded):
        assert list(shard_sampler) == shards[rank]
    # Offline from the start, without a client: the same again.
    assert list(RemoteWeightedSampler(plan.id, None, epoch=1)) == served[1]


def test_hierarchical_is_not_tied_to_torch_or_the_machine(
    live_server: LiveServer, api: SamplePlanClient, dataset: Items, private_cache: Path
) -> None:
    plan = api.create_plan(labels=dataset.targets, **{**PLAN_CONFIG, "algorithm": "hierarchical"})
    served = api.indices(plan.id, epoch=2).tolist()
    RemoteWeightedSampler(plan.id, api)  # caches the plan
    live_server.stop()
    # The stream is defined by its version alone (NOTE [hierarchical-v1]).
    _edit_cached_plan(
        private_cache, plan.id, {"versions.torch": "1.13.1", "versions.machine": "riscv64"}
    )
    assert list(RemoteWeightedSampler(plan.id, None, epoch=2)) == served
    _edit_cached_plan(private_cache, plan.id, {"versions.algorithm_version": "hierarchical-v0"})
    with pytest.raises(StreamMismatchError, match="defined by 'hierarchical-v0'"):
        list(RemoteWeightedSampler(plan.id, None, epoch=2))


def test_hierarchical_cache_entry_checks_its_codes(
    api: SamplePlanClient, dataset: Items, private_cache: Path
) -> None:
    plan = api.create_plan(labels=dataset.targets, **{**PLAN_CONFIG, "algorithm": "hierarchical"})
    RemoteWeightedSampler(plan.id, api)
    entry = private_cache / "plans" / plan.id
    cached = PlanCache(private_cache).load(plan.id)
    assert cached.codes is not None
    np.testing.assert_array_equal(cached.codes, dataset.targets)
    codes = np.load(entry / "codes.npy")
    codes[0] = (codes[0] + 1) % 3
    np.save(entry / "codes.npy", codes)
    with pytest.raises(CacheError, match=r"class codes do not match their checksum"):
        PlanCache(private_cache).load(plan.id)
    (entry / "codes.npy").unlink()
    with pytest.raises(CacheError, match="cannot be read"):
        PlanCache(private_cache).load(plan.id)
    with pytest.raises(CacheError, match="its dataset's 415 class codes are needed"):
        PlanCache(private_cache).store(cached.plan, cached.dataset, cached.weights)


def test_offline_from_the_start_and_without_a_client(
    live_server: LiveServer, api: SamplePlanClient, plan: Plan, dataset: Items
) -> None:
    RemoteWeightedSampler(plan.id, api)  # caches the plan
    live_server.stop()
    with SamplePlanClient(live_server.url, retries=0) as down:
        sampler = RemoteWeightedSampler(plan.id, down, epoch=3)
        assert len(sampler) == plan.num_samples
        assert list(sampler) == classic_stream(dataset, 3)
    assert list(RemoteWeightedSampler(plan.id, None, epoch=3)) == classic_stream(dataset, 3)


def test_unreachable_and_not_cached(
    live_server: LiveServer, api: SamplePlanClient, plan: Plan, caplog: pytest.LogCaptureFixture
) -> None:
    live_server.stop()
    with (
        caplog.at_level(logging.WARNING, logger="sampleplan.client"),
        pytest.raises(
            CacheError, match=r"no offline fallback: plan \w+ is not in the cache"
        ) as info,
    ):
        RemoteWeightedSampler(plan.id, api)
    assert isinstance(info.value.__cause__, TransportError)
    # No "using the cached copy" before a "not in the cache".
    assert "cached copy" not in caplog.text
    with pytest.raises(TransportError):
        RemoteWeightedSampler(plan.id, api, fallback=False)


def test_without_fallback_errors_surface(
    live_server: LiveServer, api: SamplePlanClient, plan: Plan
) -> None:
    sampler = RemoteWeightedSampler(plan.id, api, chunk_size=25, fallback=False)
    iterator = iter(sampler)
    next(iterator)
    live_server.stop()
    with pytest.raises(TransportError):
        list(iterator)


def test_a_service_answering_5xx_falls_back_too(
    live_server: LiveServer, plan: Plan, dataset: Items
) -> None:
    real = httpx.HTTPTransport()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/indices") and int(request.url.params["offset"]) >= 50:
            return httpx.Response(503, json={"title": "Storage unavailable", "detail": "db down"})
        return real.handle_request(request)

    with real, httpx.Client(transport=httpx.MockTransport(handler)) as http:
        api = SamplePlanClient(live_server.url, retries=1, backoff=0.0, http_client=http)
        assert list(RemoteWeightedSampler(plan.id, api, chunk_size=25)) == classic_stream(
            dataset, 0
        )
        with pytest.raises(ServerError):
            list(RemoteWeightedSampler(plan.id, api, chunk_size=25, fallback=False))


def test_the_cache_entry(api: SamplePlanClient, plan: Plan, private_cache: Path) -> None:
    RemoteWeightedSampler(plan.id, api)
    entry = private_cache / "plans" / plan.id
    assert sorted(os.listdir(entry)) == [
        "dataset.json",
        "manifest.json",
        "plan.json",
        "weights.npy",
    ]
    cached = PlanCache(private_cache).load(plan.id)
    np.testing.assert_array_equal(cached.weights, api.weights(plan.id))
    assert cached.plan == plan and cached.dataset.size == len(imbalanced_labels())
    assert default_cache_dir() == private_cache  # SAMPLEPLAN_CACHE_DIR
    # A damaged entry is refused, not used.
    weights = np.load(entry / "weights.npy")
    weights[0] *= 2
    np.save(entry / "weights.npy", weights)
    with pytest.raises(CacheError, match=r"do not match their checksum\); delete that directory"):
        PlanCache(private_cache).load(plan.id)
    with pytest.raises(CacheError, match="not a plan id"):
        PlanCache(private_cache).load("../../etc")


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SAMPLEPLAN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "sampleplan"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")
    assert default_cache_dir() == Path.home() / ".cache" / "sampleplan"


@pytest.mark.parametrize(
    "config",
    [
        {"schedule": {"kind": "dynamic_balance", "lambda": 0.6}, "seed": 2},
        {
            "schedule": {"kind": "power", "start": 0.0, "end": 1.0, "epochs": 3},
            "split": {"fractions": [0.8, 0.2], "seed": 1},
        },
        {
            "schedule": {"kind": "power", "start": 1.0, "end": 0.0, "epochs": 2},
            "algorithm": "hierarchical",
        },
    ],
)
def test_a_scheduled_plan_offline_follows_the_epoch(
    live_server: LiveServer, api: SamplePlanClient, dataset: Items, config: dict[str, Any]
) -> None:
    plan = api.create_plan(labels=dataset.targets, **config)
    served = {epoch: api.indices(plan.id, epoch=epoch).tolist() for epoch in (0, 1, 4)}
    RemoteWeightedSampler(plan.id, api)  # caches the plan (and its class codes)
    live_server.stop()
    for epoch in (0, 1, 4):
        sampler = RemoteWeightedSampler(plan.id, None, epoch=epoch)
        assert len(sampler) == len(served[epoch])
        assert list(sampler) == served[epoch]
