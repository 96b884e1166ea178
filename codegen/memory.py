"""Placement of activation buffers in one arena.

A buffer is live from the step that writes it to the last step that reads it (inclusive); two
buffers whose lifetimes overlap must not share bytes. Two strategies:

* :func:`pool_allocation` - the paper's allocator: each output goes into the first pool whose
  current occupant is dead (neither an input of this step nor an output still waiting for a
  reader), else into a new pool; a pool is as large as the largest buffer it ever holds.
* :func:`plan` - offsets in a single arena: greedy by size with best-fit gaps, then a bounded
  exhaustive search over placement orders (exact when it completes), never worse than the pools.

:func:`lower_bound` (the largest total of simultaneously live buffers) bounds every placement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Placement steps the exhaustive search may take; enough to finish for about 8 buffers.
SEARCH_BUDGET = 200_000


@dataclass(frozen=True)
class Buffer:
    """An activation buffer of ``size`` bytes live during steps ``start..end`` (inclusive)."""

    name: str
    size: int
    start: int
    end: int

    def overlaps(self, other: Buffer) -> bool:
        return self.start <= other.end and other.start <= self.end


@dataclass(frozen=True)
class Placement:
    """Byte offset of every buffer and the arena size they need."""

    offsets: dict[str, int]
    size: int
    method: str


def lower_bound(buffers: Sequence[Buffer]) -> int:
    """Largest sum of sizes of buffers live at the same step: no placement can be smaller."""
    steps = {b.start for b in buffers}  # the live total only grows when a buffer starts
    return max((sum(b.size for b in buffers if b.start <= t <= b.end) for t in steps), default=0)


def pool_allocation(buffers: Sequence[Buffer]) -> Placement:
    """The paper's pool allocator (buffers are taken in the order they are written)."""
    pool_ends: list[int] = []  # last step the current occupant of each pool is read
    pool_sizes: list[int] = []
    pool_of: dict[str, int] = {}
    for b in sorted(buffers, key=lambda b: (b.start, b.end)):
        free = next((i for i, end in enumerate(pool_ends) if end < b.start), None)
        if free is None:
            pool_ends.append(b.end)
            pool_sizes.append(b.size)
            pool_of[b.name] = len(pool_ends) - 1
        else:
            pool_ends[free] = b.end
            pool_sizes[free] = max(pool_sizes[free], b.size)
            pool_of[b.name] = free
    starts = [sum(pool_sizes[:i]) for i in range(len(pool_sizes))]
    return Placement({name: starts[i] for name, i in pool_of.items()}, sum(pool_sizes), "pools")


def plan(buffers: Sequence[Buffer], budget: int = SEARCH_BUDGET) -> Placement:
    """Smallest arena found: best-fit greedy, improved by bounded search, floored by the pools."""
    _check_unique(buffers)
    best = _greedy_best_fit(buffers)
    bound = lower_bound(buffers)
    if best.size > bound:
        best = _search(buffers, best, bound, budget)
    pools = pool_allocation(buffers)
    return pools if pools.size < best.size else best


def check_placement(buffers: Sequence[Buffer], placement: Placement) -> None:
    """Raise ValueError if two buffers live at the same time share a byte or leave the arena."""
    for i, a in enumerate(buffers):
        oa = placement.offsets[a.name]
        if oa < 0 or oa + a.size > placement.size:
            raise ValueError(f"buffer '{a.name}' [{oa}, {oa + a.size}) outside arena of {placement.size}")
        for b in buffers[i + 1:]:
            ob = placement.offsets[b.name]
            if a.overlaps(b) and oa < ob + b.size and ob < oa + a.size:
                raise ValueError(f"buffers '{a.name}' and '{b.name}' are live together and overlap")


def _check_unique(buffers: Sequence[Buffer]) -> None:
    names = [b.name for b in buffers]
    if len(set(names)) != len(names):
        raise ValueError(f"buffer names are not unique: {names}")


def _greedy_best_fit(buffers: Sequence[Buffer]) -> Placement:
    """Largest first; each into the smallest gap between time-overlapping placed buffers."""
    placed: list[tuple[Buffer, int]] = []
    for b in sorted(buffers, key=lambda b: (-b.size, b.start - b.end, b.start)):
        busy = sorted((o, o + p.size) for p, o in placed if p.overlaps(b))
        best_offset, best_gap, cursor = None, None, 0
        for lo, hi in busy:
            gap = lo - cursor
            if gap >= b.size and (best_gap is None or gap < best_gap):
                best_offset, best_gap = cursor, gap
            cursor = max(cursor, hi)
        placed.append((b, cursor if best_offset is None else best_offset))
    return _placement(placed, "greedy best-fit")


def _lowest_fit(b: Buffer, placed: list[tuple[Buffer, int]]) -> int:
    busy = [(o, o + p.size) for p, o in placed if p.overlaps(b)]
    for candidate in sorted({0, *(hi for _, hi in busy)}):
        if all(candidate + b.size <= lo or candidate >= hi for lo, hi in busy):
            return candidate
    raise AssertionError("unreachable: the top of the highest buffer is always free")


def _search(buffers: Sequence[Buffer], best: Placement, bound: int, budget: int) -> Placement:
    """Depth-first over placement orders, each buffer at its lowest free offset.

    Every optimal layout is reached by some order (place buffers by increasing optimal offset:
    each lands at or below its optimal offset), so a completed search is exact.
    """
    steps = 0
    placed: list[tuple[Buffer, int]] = []
    remaining = list(buffers)

    def descend(peak: int) -> bool:  # returns True to stop (bound reached or budget spent)
        nonlocal best, steps
        if not remaining:
            best = _placement(placed, "order search")
            return best.size <= bound
        for i in range(len(remaining)):
            b = remaining.pop(i)
            offset = _lowest_fit(b, placed)
            steps += 1
            if max(peak, offset + b.size) < best.size:
                placed.append((b, offset))
                stop = descend(max(peak, offset + b.size))
                placed.pop()
            else:
                stop = False
            remaining.insert(i, b)
            if stop or steps >= budget:
                return True
        return False

    descend(0)
    return best


def _placement(placed: list[tuple[Buffer, int]], method: str) -> Placement:
    return Placement({b.name: o for b, o in placed}, max((o + b.size for b, o in placed), default=0), method)
