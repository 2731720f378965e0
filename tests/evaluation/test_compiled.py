"""The kernels' dispatch between the ahead-of-time build and numba's JIT (:mod:`mec_cli.evaluation.compiled`)."""
import threading

import numba
import numpy as np
import pytest

from mec_cli.evaluation import aot, compiled


def _values():
    """Arguments of every kind the kernels take: arrays by dtype, rank, layout and writeability, and scalars."""
    base = np.arange(24, dtype=np.int64).reshape(4, 6)
    readonly = np.arange(5, dtype=np.float64)
    readonly.flags.writeable = False
    out = [base, base.T, base[:, ::2], base[0], base[:, 1], readonly, np.zeros(0, np.uint8), np.zeros((0, 4)),
           np.frombuffer(b"abc", np.uint8)]
    out += [np.zeros(3, dt) for dt in (np.int8, np.int32, np.uint64, np.bool_, np.float32, np.uint8, np.int16)]
    out += [3, -(1 << 62), True, False, 2.5, np.int64(7), np.int32(7), np.uint64(7), np.float64(1.5), np.bool_(True),
            (1, 2), (base, 3)]
    return out


@pytest.mark.parametrize("value", _values(), ids=lambda v: f"{type(v).__name__}")
def test_an_arguments_key_names_numbas_type_of_it(value):
    """The key a call is looked up by (made without numba) is the one the build stores for numba's type of it."""
    assert compiled.value_key(value) == compiled._tupled(aot.type_key(numba.typeof(value)))


def test_arguments_the_build_cannot_hold_have_no_key():
    """Such a call always runs by the JIT (which types it, or says why not)."""
    for value in (None, "text", [1, 2], 1 << 70, object(), (1, None)):
        assert compiled.value_key(value) is None or None in compiled.value_key(value)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_split_covers_every_item_once_in_ranges_of_about_equal_work(threads, monkeypatch):
    monkeypatch.setattr(compiled, "threads", lambda: threads)
    rng = np.random.default_rng(0)
    work = rng.integers(0, 100, 1000)
    cost = np.r_[0, np.cumsum(work)]
    ranges, lock = [], threading.Lock()

    def fn(lo, hi):
        with lock:
            ranges.append((lo, hi))

    compiled.split(fn, cost, minimum=0)
    ranges.sort()
    assert ranges[0][0] == 0 and ranges[-1][1] == 1000 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert len(ranges) == threads
    shares = [cost[hi] - cost[lo] for lo, hi in ranges]
    assert max(shares) - min(shares) <= 2 * work.max()
    ranges.clear()
    compiled.split(fn, cost, minimum=cost[-1] + 1)  # under the minimum work: one range, on this thread
    assert ranges == [(0, 1000)]
    ranges.clear()
    compiled.split(fn, np.zeros(1, np.int64), minimum=0)  # no items: no call
    assert ranges == []


def test_split_hands_a_threads_error_to_the_caller(monkeypatch):
    monkeypatch.setattr(compiled, "threads", lambda: 2)

    def fn(lo, hi):
        if lo > 0:
            raise ValueError(f"range {lo}-{hi}")

    with pytest.raises(ValueError, match="range 5-10"):
        compiled.split(fn, np.arange(11), minimum=0)


def test_single_threaded_holds_for_this_thread_only():
    seen = {}
    with compiled.single_threaded():
        seen["inside"] = compiled.threads()
        other = threading.Thread(target=lambda: seen.update(other=compiled.threads()))
        other.start()
        other.join()
    assert seen["inside"] == 1 and seen["other"] == compiled.threads() >= 1


def test_a_kernel_runs_by_the_jit_on_types_the_build_lacks():
    """A kernel decorated here (no AOT build has it) is numba's: the same answer as the Python function."""
    @compiled.njit(cache=False, nogil=True)
    def twice_sum(a):
        s = 0.0
        for v in a:
            s += 2 * v
        return s

    a = np.arange(10, dtype=np.float64)
    assert twice_sum(a) == twice_sum.py_func(a) == 90.0
    assert twice_sum.dispatcher.signatures and compiled.jit_loaded()
