"""A replica killed behind the load balancer in the middle of an epoch.

Two ``sampleplan serve`` replicas on one PostgreSQL database behind Debian's haproxy
(``docker/haproxy.cfg``, as compose.yaml deploys it). Each rank's
``RemoteWeightedSampler`` iterates its shard in small chunks; after the first part of
rank 0's shard one replica gets ``kill -9``. Every rank must still yield exactly its
``DistributedSampler`` shard of ``WeightedRandomSampler``'s stream, fetched from the
surviving replica (haproxy redispatches refused connections; the client retries a body
cut off mid-way), and never from the sampler's offline cache.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest

from benchmarks.balancer import haproxy, haproxy_binary
from sampleplan.client import RemoteWeightedSampler, SamplePlanClient
from tests.helpers import reference
from tests.helpers.servers import ForkedServer

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out

WORLD_SIZE = 2
NUM_SAMPLES = 120_000
CHUNK = 2_000


def test_a_replica_killed_mid_epoch_leaves_every_rank_its_exact_stream(
    fresh_postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if haproxy_binary() is None:
        pytest.skip("REPLICA LOSS NOT TESTED: haproxy is not installed (make test installs it)")
    env = {"SAMPLEPLAN_DATABASE_URL": fresh_postgres_url, "SAMPLEPLAN_LOG_LEVEL": "info"}
    replicas = [ForkedServer(env, tmp_path / f"replica-{i}.log").launch() for i in range(2)]
    labels = [i % 7 if i % 11 else 0 for i in range(3_000)]
    try:
        for replica in replicas:
            replica.wait_ready()
        backends = [replica.url.removeprefix("http://") for replica in replicas]
        with (
            haproxy(backends, tmp_path) as url,
            SamplePlanClient(url, retries=6, backoff=0.05) as api,
        ):
            plan = api.create_plan(labels=labels, num_samples=NUM_SAMPLES, seed=21)
            samplers = [
                RemoteWeightedSampler(
                    plan.id,
                    api,
                    epoch=2,
                    rank=rank,
                    world_size=WORLD_SIZE,
                    chunk_size=CHUNK,
                    max_chunk_size=CHUNK,
                    cache_dir=tmp_path / f"cache-{rank}",
                )
                for rank in range(WORLD_SIZE)
            ]
            caplog.set_level(logging.INFO, logger="sampleplan.client")
            iterators = [iter(sampler) for sampler in samplers]
            seen: list[list[int]] = [[] for _ in samplers]
            # Both ranks are under way, pages served by both replicas (round robin) ...
            for rank, iterator in enumerate(iterators):
                seen[rank] += itertools.islice(iterator, 5 * CHUNK)
            # ... when one of them dies without a word.
            replicas[0].kill()
            for rank, iterator in enumerate(iterators):
                seen[rank] += iterator
    finally:
        for replica in replicas:
            replica.stop()

    stream = reference.weighted_stream(
        reference.inverse_frequency(labels), NUM_SAMPLES, True, 21 + 2
    )
    for rank in range(WORLD_SIZE):
        assert seen[rank] == reference.distributed_shard(stream, rank, WORLD_SIZE)
    offline = [r.getMessage() for r in caplog.records if "local cache" in r.getMessage()]
    assert offline == [], offline
    # Both replicas served pages (their access logs say so): the killed one before it died.
    for replica in replicas:
        assert "/indices" in replica.log_path.read_text()
