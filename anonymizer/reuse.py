"""Reusing the output of repeated subtrees.

Exports repeat the same small objects again and again: the codes of an Observation, the reference
to the patient, the meta tag. Under one plan node, the walk's output and the label operations it
records depend only on the subtree's content, unless an action ran whose result two equal values
need not share (`Method.varies`: date shifts, encryption, perturbation, generalization, a nested
resource, a method that takes a whole node). So the first walk of a subtree is remembered under
its compact JSON text, and the next equal subtree under the same node takes the remembered output
object without being walked again.

Only the streaming core asks for it (`ResourceState.reuse`): outputs then share objects with
each other and with their input, which is harmless when they are serialised at once. Memory stays
bounded: small subtrees only, a cap per node, and a byte budget per thread's runtime after which
every cache starts afresh. A node whose subtrees rarely repeat stops caching. The caches are learnt
while running, so they are a thread's own (shapes.NodeRun): threads never share an output object.
"""

from __future__ import annotations

from typing import Any, Protocol

MAX_KEY_BYTES = 512  # larger subtrees are walked every time
CHECK_EVERY = 64  # misses between looks at a node's hit rate
# A miss costs about what three hits save (the text, the walk, remembering): below this many hits
# per miss a node stops caching.
MIN_HITS_PER_MISS = 3
NODE_LIMIT = 2048  # misses after which a node's cache starts afresh
# Memory per engine: an entry is charged ENTRY_FACTOR times its JSON text (the text, the entry and
# the output objects measured about 4-8 times the text on Synthea).
BUDGET_BYTES = 24 << 20
ENTRY_FACTOR = 8

Entry = tuple[Any, int]  # (output, label operations)


class ReusePool:
    """The memory budget shared by the caches of one thread's plan nodes."""

    def __init__(self, budget: int = BUDGET_BYTES) -> None:
        self.budget = budget
        self.used = 0
        self.caches: list[dict[bytes, Entry]] = []

    def new_cache(self) -> dict[bytes, Entry]:
        cache: dict[bytes, Entry] = {}
        self.caches.append(cache)
        return cache

    def charge(self, size: int) -> None:
        self.used += size
        if self.used > self.budget:
            for cache in self.caches:
                cache.clear()
            self.used = size


class Remembering(Protocol):
    """A node's reuse state (shapes.NodeRun)."""

    cache: dict[bytes, Entry] | None
    hits: int
    misses: int


def remember(node: Remembering, key: bytes, result: Any, ops: int, varied: bool, pool: ReusePool) -> None:
    """Record one walked subtree under `node`."""
    cache = node.cache
    if cache is None:  # stopped while this subtree was walked (recursive types)
        return
    node.misses += 1
    if node.misses % CHECK_EVERY == 0:
        if node.hits < MIN_HITS_PER_MISS * node.misses:
            cache.clear()
            node.cache = None
            return
        if node.misses >= NODE_LIMIT:
            cache.clear()
            node.hits = node.misses = 0
    if varied or len(key) > MAX_KEY_BYTES:
        return
    cache[key] = (result, ops)
    pool.charge(ENTRY_FACTOR * len(key))
