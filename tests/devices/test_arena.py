"""Arena / ArenaSet: views into flat buffers, one-call zero, growth, release, compaction."""

from __future__ import annotations

import gc
import itertools
import math
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from paramarena.devices.arena import Arena, ArenaSet
from paramarena.devices.context import Context
from paramarena.errors import DeviceUnavailableError, ParameterTypeError, ParameterValueError


def test_allocate_many_gives_aligned_contiguous_views_of_one_buffer():
    arena = Arena(np.float32)
    views = arena.allocate_many([(3, 4), 5, (2, 1, 3), ()])
    assert [v.shape for v in views] == [(3, 4), (5,), (2, 1, 3), ()]
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in views)
    (segment,) = arena.segments()
    for v in views:
        assert np.shares_memory(v, segment)
        assert v.__array_interface__["data"][0] % 64 == 0
    for i, v in enumerate(views):
        v[...] = i + 1
    for i, v in enumerate(views):  # no overlaps
        assert (v == i + 1).all()
    assert arena.live_count == 4
    assert arena.live_elements == 12 + 5 + 6 + 1


def test_zero_zeroes_every_live_view_only():
    arena = Arena(np.float64, min_segment_elements=64)
    views = arena.allocate_many([(4,)] * 30)  # > one segment of 64: grows
    more = arena.allocate_many([(7, 3)] * 3)
    for v in [*views, *more]:
        v[...] = 5.0
    released = views[3]
    arena.release(released)
    arena.zero()
    for v in [*views, *more]:
        if v is not released:
            assert not v.any()
    assert (released == 5.0).all()  # a stale view is not zeroed any more


def test_growth_never_moves_existing_views():
    arena = Arena(np.float32, min_segment_elements=16)
    first = arena.allocate((4,))
    first[...] = [1, 2, 3, 4]
    addr = first.__array_interface__["data"][0]
    for _ in range(20):
        arena.allocate_many([(8,), (9,)])
    assert len(arena.segments()) > 2
    assert first.__array_interface__["data"][0] == addr
    np.testing.assert_array_equal(first, [1, 2, 3, 4])
    caps = [s.size for s in arena.segments()]
    assert all(b >= 2 * a for a, b in itertools.pairwise(caps))


def test_released_memory_is_never_reissued():
    arena = Arena(np.float32, min_segment_elements=1024)
    old = arena.allocate((10,))
    arena.release(old)
    old[...] = 42.0
    for v in arena.allocate_many([(10,)] * 50):
        assert not np.shares_memory(v, old)
    with pytest.raises(ParameterValueError, match="not a live view"):
        arena.release(old)
    assert not arena.owns(old)


def test_release_rejects_foreign_arrays():
    arena = Arena(np.float32)
    arena.allocate((4,))
    with pytest.raises(ParameterValueError, match="float32 arena"):
        arena.release(np.zeros(4, np.float32))
    assert not arena.owns(np.zeros(4, np.float32))
    arena.release(np.zeros((0, 3), np.float32))  # zero-size: ignored


def test_compact_copies_live_views_and_detaches_old_ones():
    arena = Arena(np.float32, min_segment_elements=32)
    views = arena.allocate_many([(5,)] * 20)
    for i, v in enumerate(views):
        v[...] = i
    for v in views[::2]:
        arena.release(v)
    pairs = arena.compact()
    assert [old is v for (old, _), v in zip(pairs, views[1::2], strict=True)] == [True] * 10
    assert len(arena.segments()) == 1
    for old, new in pairs:
        np.testing.assert_array_equal(old, new)
        assert not np.shares_memory(old, new)
        assert arena.owns(new)
        assert not arena.owns(old)
    new_views = [new for _, new in pairs]
    del pairs, views
    gc.collect()
    arena.zero()
    assert not any(v.any() for v in new_views)
    assert Arena(np.float32).compact() == []


def test_stale_view_keeps_its_memory_alive_after_arena_is_gone():
    arena = Arena(np.float64)
    v = arena.allocate((1000,))
    v[...] = 3.0
    del arena
    gc.collect()
    assert (v == 3.0).all()  # numpy's base reference keeps the segment alive


def test_bfloat16_and_bad_shapes():
    arena = Arena("bfloat16")
    (v,) = arena.allocate_many([(3,)])
    assert v.dtype == np.dtype(ml_dtypes.bfloat16)
    with pytest.raises(ParameterValueError, match="non-negative"):
        arena.allocate((2, -1))


def test_arena_set_keys_by_context_and_dtype():
    arenas = ArenaSet()
    a = arenas.allocate_many(Context("cpu", 0), np.float32, [(2,), (3,)])
    b = arenas.allocate_many(Context("cpu", 1), np.float32, [(2,)])
    c = arenas.allocate_many(Context("cpu", 0), "float16", [(2,)])
    assert arenas.arena(Context("cpu", 0), np.float32).owns(a[1])
    assert len(arenas.arenas()) == 3
    for v in [*a, *b, *c]:
        v[...] = 1
    arenas.zero(Context("cpu", 1))
    assert not b[0].any()
    assert a[0].all()
    arenas.zero()
    assert not any(v.any() for v in [*a, *c])
    arenas.release(Context("cpu", 0), a[0])
    assert not arenas.arena(Context("cpu", 0), np.float32).owns(a[0])


def test_arena_set_gpu_without_cuda_says_what_to_install(monkeypatch):
    from paramarena.devices import gpu

    monkeypatch.setattr(gpu, "_cuda_available", lambda: (False, "numba-cuda is not installed"))
    with pytest.raises(DeviceUnavailableError, match=r"paramarena\[cuda\]"):
        ArenaSet().arena(Context("gpu", 0), np.float32)


def test_zeroed_arena_hands_out_zero_views_every_time():
    arena = Arena(np.float32, min_segment_elements=32, zeroed=True)
    first = arena.allocate_many([(5,), (7,)])
    assert all(not v.any() for v in first)
    for v in first:
        v[...] = 9.0
    arena.release(first[0])
    more = arena.allocate_many([(5,)] * 20)  # fills the segment, then grows
    assert len(arena.segments()) > 1
    assert all(not v.any() for v in more)
    assert (first[1] == 9.0).all()
    plain = Arena(np.float32, zeroed=False)
    assert not plain.zeroed


def test_zeroed_arena_on_a_plugin_backend_zeroes_new_segments():
    calls = []

    class Backend:
        def empty(self, shape, dtype, device_id):
            return np.full(shape, 7, dtype)

        def zero(self, arrays):
            calls.append(len(arrays))
            for a in arrays:
                a[...] = 0

    arena = Arena(np.int32, backend=Backend(), zeroed=True)
    views = arena.allocate_many([(3,), (4,)])
    assert calls == [1]  # one zero call for the new segment, none per view
    assert all(not v.any() for v in views)


def _address_of(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8])
def test_allocate_packed_runs_of_equal_shapes_are_exact_views(dtype: Any) -> None:
    """Runs of >= 8 equal shapes come out as rows of one strided array: same promises."""
    shapes: list[Any] = []
    for i in range(40):  # interleaved shapes, one needing padding, scalars, empties, ints
        shapes += [(3, 5), (16,), (), (0, 4), 7 if i % 2 else (7,)]
    arena = Arena(dtype)
    views, buffer, offsets = arena.allocate_packed(shapes)
    assert len(views) == len(shapes) == offsets.size
    isz = np.dtype(dtype).itemsize
    seen = np.zeros(buffer.size, np.int64)
    for shape, view, off in zip(shapes, views, offsets.tolist(), strict=True):
        want = (shape,) if isinstance(shape, int) else shape
        assert isinstance(view, np.ndarray)
        assert view.shape == want
        assert view.dtype == dtype
        assert view.flags.c_contiguous
        assert view.flags.writeable
        if view.size == 0:
            assert off == -1
            assert not arena.owns(view)
            continue
        assert _address_of(view) == _address_of(buffer) + off * isz
        assert off % (64 // isz) == 0  # aligned like single allocations
        seen[off : off + view.size] += 1
        assert arena.owns(view)
    assert seen.max() == 1  # no two views overlap
    for i, view in enumerate(views):
        view[...] = i % 100 + 1
    for i, view in enumerate(views):
        assert (view == i % 100 + 1).all()
    arena.release(views[0])
    assert not arena.owns(views[0])
    arena.zero()
    assert all((v == 0).all() for v in views[1:])
    assert (views[0] == 1).all()  # released: no longer zeroed


def test_allocate_packed_finds_views_by_address_after_more_allocations() -> None:
    arena = Arena(np.float32)
    views, _, _ = arena.allocate_packed([(4, 4)] * 20)
    more = arena.allocate_packed([(2,)] * 10)[0]
    twin = views[3][...]  # another object over the same memory
    assert twin is not views[3]
    assert arena.owns(twin)
    assert arena.owns(more[9])
    arena.release(twin)
    assert not arena.owns(views[3])
    assert arena.live_count == 29


@pytest.mark.parametrize("bad", [("a",), (2.5,), "x", None, (3, 1.0)])
def test_non_integer_shapes_raise_the_packages_type_error(bad: Any) -> None:
    arena = Arena(np.float32)
    with pytest.raises(ParameterTypeError, match="must be integers"):
        arena.allocate_packed([(2,), bad])
    with pytest.raises(ParameterTypeError, match="must be integers"):
        arena.allocate(bad)
    assert arena.live_count == 0  # nothing handed out by the failed calls


def test_allocate_rows_makes_no_view_until_asked_and_keeps_every_promise() -> None:
    """``allocate_rows`` hands out runs; the arena's books agree before and after views exist."""
    shapes = [(3, 5) if i % 3 else (16,) for i in range(30)] + [(0,), (0,)]
    arena = Arena(np.float32, zeroed=True)
    grouped = arena.group_shapes(shapes)
    runs, buffer, offsets = arena.allocate_rows(grouped, len(shapes))
    assert [members for members, _ in runs] == list(grouped.values())
    assert all(run._views is None for _, run in runs if run.rows is not None)
    assert arena.live_count == 30  # counted without making views
    assert arena.live_elements == sum(math.prod(s) for s in shapes)
    views: list[Any] = [None] * len(shapes)
    for members, run in runs:
        for i, view in zip(members, run.views(), strict=True):
            views[i] = view
    assert run.views() is run.views()  # made once
    for shape, view, off in zip(shapes, views, offsets.tolist(), strict=True):
        assert view.shape == shape
        if off >= 0:
            assert _address_of(view) == _address_of(buffer) + off * 4
            assert arena.owns(view)
        else:
            assert view.size == 0
    for i, view in enumerate(views):
        view[...] = i + 1
    arena.release(views[1])
    arena.zero()
    assert (views[1] == 2).all()  # released: no longer zeroed
    assert all(not v.any() for i, v in enumerate(views) if i != 1)
    assert arena.live_count == 29


def test_allocate_rows_rejects_a_grouping_that_does_not_cover_the_count() -> None:
    arena = Arena(np.float32)
    with pytest.raises(ParameterValueError, match="covers 2 views, not 3"):
        arena.allocate_rows({(2,): [0, 1]}, 3)
    with pytest.raises(ParameterTypeError, match="must be integers"):
        arena.allocate_rows({(2.5,): [0]}, 1)  # type: ignore[dict-item]


def test_a_view_of_a_pending_run_is_found_by_address_before_the_run_is_made() -> None:
    arena = Arena(np.float64)
    runs, buffer, offsets = arena.allocate_rows({(4,): list(range(10))}, 10)
    twin = buffer[int(offsets[3]) : int(offsets[3]) + 4]  # not an object the arena made
    assert arena.owns(twin)
    arena.release(twin)
    assert arena.live_count == 9
    assert not arena.owns(runs[0][1].views()[3])


def _grouped_one_by_one(shapes: list[Any]) -> dict[tuple[int, ...], list[int]]:
    """The reference: every shape converted on its own, positions appended in order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, shp in enumerate(shapes):
        key = (int(shp),) if np.ndim(shp) == 0 else tuple(int(s) for s in shp)
        groups.setdefault(key, []).append(i)
    return groups


@pytest.mark.parametrize(
    "shapes",
    [
        [],
        [(4,)] * 5,
        [(3, 5) if i % 3 else (16,) for i in range(30)] + [(0,), ()],
        [(2,), [2], 2, np.int64(2), (np.int64(2),), (3, 1), [3, 1]],  # converted ones
        [(np.int64(7),), (7,), (1, 1)],
    ],
)
def test_group_shapes_gives_each_distinct_shape_its_positions_in_first_seen_order(
    shapes: list[Any],
) -> None:
    grouped = Arena.group_shapes(shapes)
    want = _grouped_one_by_one(shapes)
    assert grouped == want
    assert list(grouped) == list(want)  # first-seen order
    assert all(type(d) is int for shape in grouped for d in shape)


def test_group_shapes_refuses_bad_shapes() -> None:
    with pytest.raises(ParameterValueError, match="non-negative"):
        Arena.group_shapes([(2,), (3, -1)])
    with pytest.raises(ParameterTypeError, match="must be integers"):
        Arena.group_shapes([(2,), (2.5,)])
