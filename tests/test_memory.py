"""Activation memory: the paper's pools, the arena planner, the lower bound, against brute force."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.memory import Buffer, Placement, check_placement, lower_bound, plan, pool_allocation


def brute_force_min(buffers: list[Buffer]) -> int:
    """Smallest arena over every integer offset assignment (backtracking with a bound)."""
    total = sum(b.size for b in buffers)
    best = total
    offsets: list[int] = []

    def place(i: int, peak: int) -> None:
        nonlocal best
        if peak >= best:
            return
        if i == len(buffers):
            best = peak
            return
        b = buffers[i]
        for o in range(total - b.size + 1):
            if all(not b.overlaps(p) or o + b.size <= op or op + p.size <= o
                   for p, op in zip(buffers[:i], offsets, strict=True)):
                offsets.append(o)
                place(i + 1, max(peak, o + b.size))
                offsets.pop()

    place(0, 0)
    return best


@st.composite
def lifetimes(draw: st.DrawFn, max_buffers: int = 6) -> list[Buffer]:
    n = draw(st.integers(1, max_buffers))
    out = []
    for i in range(n):
        start = draw(st.integers(0, 6))
        end = draw(st.integers(start, start + 4))
        out.append(Buffer(f"b{i}", draw(st.integers(1, 5)), start, end))
    return out


@settings(max_examples=120, deadline=None)
@given(lifetimes())
def test_planner_is_optimal_on_small_sets(buffers: list[Buffer]) -> None:
    placement = plan(buffers)
    check_placement(buffers, placement)
    assert placement.size == brute_force_min(buffers)


@settings(max_examples=80, deadline=None)
@given(lifetimes(max_buffers=14))
def test_planner_is_valid_and_between_bound_and_pools(buffers: list[Buffer]) -> None:
    placement = plan(buffers, budget=2000)
    pools = pool_allocation(buffers)
    check_placement(buffers, placement)
    check_placement(buffers, pools)
    assert lower_bound(buffers) <= placement.size <= pools.size


def test_pools_follow_the_paper() -> None:
    # a chain a -> b -> c -> d: two pools ping-pong; the skip buffer s lives across and needs a third
    buffers = [Buffer("a", 10, 0, 1), Buffer("b", 4, 1, 2), Buffer("s", 3, 1, 3),
               Buffer("c", 8, 2, 3), Buffer("d", 6, 3, 4)]
    pools = pool_allocation(buffers)
    # a -> pool0; b -> pool1 (a is b's input); s -> pool2; c -> pool0 (a dead); d -> pool1 (b dead)
    assert pools.offsets == {"a": 0, "c": 0, "b": 10, "d": 10, "s": 16}
    assert pools.size == 10 + 6 + 3
    assert lower_bound(buffers) == 17  # step 3: s + c + d
    assert plan(buffers).size == 17


def test_check_placement_rejects_overlap() -> None:
    buffers = [Buffer("a", 4, 0, 1), Buffer("b", 4, 1, 2)]
    with pytest.raises(ValueError, match="'a' and 'b'"):
        check_placement(buffers, Placement({"a": 0, "b": 2}, 6, "manual"))


def test_lower_bound_counts_only_simultaneous_buffers() -> None:
    buffers = [Buffer(f"b{i}", s, i, i + 1) for i, s in enumerate([5, 7, 2, 9])]
    assert lower_bound(buffers) == max(a + b for a, b in itertools.pairwise([5, 7, 2, 9]))
