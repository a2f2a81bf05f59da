"""The engine's artifact cache stays within its bound, least recently used first."""

from __future__ import annotations

import tracemalloc

from chem_persistence_async import Artifact
from chem_persistence_async.engine.artifact_cache import ArtifactCache


def test_the_cache_keeps_the_most_recent_within_its_bound() -> None:
    cache = ArtifactCache(max_bytes=50_000)
    artifacts = [Artifact.of("n", {"n": n, "pad": "x" * 100}) for n in range(200)]
    cache.put_all(artifacts)
    assert 0 < len(cache) < 200
    assert cache.size_bytes <= 50_000
    assert artifacts[-1].hash in cache
    assert artifacts[0].hash not in cache
    kept = len(cache)
    oldest, next_oldest = artifacts[-kept], artifacts[-kept + 1]
    assert cache.get(oldest.hash) is not None  # used: now the most recent
    cache.put(Artifact.of("n", {"n": "new", "pad": "x" * 100}))
    assert oldest.hash in cache
    assert next_oldest.hash not in cache


def test_an_artifact_larger_than_the_bound_is_not_kept() -> None:
    cache = ArtifactCache(max_bytes=4096)
    cache.put(Artifact.of("big", {"blob": "x" * 10_000}))
    assert len(cache) == 0


def test_the_estimate_does_not_undercount_what_python_holds() -> None:
    """The bound is memory, not JSON: small artifacts cost far more than their JSON."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache = ArtifactCache(max_bytes=10**9)
        cache.put_all(Artifact.of("order", {"order": n}) for n in range(2_000))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cache.size_bytes >= held * 0.8
