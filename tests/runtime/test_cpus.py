"""Pinning a process to CPUs (runtime/cpus.py): the lists ``--cpus`` takes, and their errors."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from wayang.errors import UsageError
from wayang.runtime.cpus import CpuPin, parse_cpus


@pytest.fixture
def restored() -> Iterator[frozenset[int]]:
    """This process's CPUs, given back after the test."""
    before = frozenset(os.sched_getaffinity(0))
    yield before
    os.sched_setaffinity(0, before)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("0,2", {0, 2}), ("0-3", {0, 1, 2, 3}), (" 1 , 4-5 ", {1, 4, 5})],
)
def test_cpu_lists_are_read_as_taskset_writes_them(text: str, cpus: set[int]) -> None:
    assert parse_cpus(text) == frozenset(cpus)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "--cpus: 'a' is not a CPU number or a range (give e.g. 0, 0,2 or 0-3)"),
        ("0,", "--cpus: '' is not a CPU number or a range"),
        ("3-1", "--cpus: '3-1' is not a CPU range (give e.g. 0-3, low to high)"),
        ("-1", "--cpus: '-1' is not a CPU number or a range"),
    ],
)
def test_a_bad_cpu_list_is_named(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_cpus(text)
    assert str(caught.value).startswith(message)


def test_pinning_to_a_cpu_the_process_lacks_is_refused_and_changes_nothing(
    restored: frozenset[int],
) -> None:
    missing = max(restored) + 1
    with pytest.raises(UsageError, match=rf"CPU {missing} is not among this process's CPUs"):
        CpuPin.apply(frozenset({missing}))
    assert frozenset(os.sched_getaffinity(0)) == restored


def test_a_pin_remembers_the_cpus_its_children_get_back(restored: frozenset[int]) -> None:
    first = min(restored)
    pin = CpuPin.apply(frozenset({first}))
    assert frozenset(os.sched_getaffinity(0)) == {first}
    assert (pin.pinned, pin.free) == (frozenset({first}), restored)
    pin.child_setup()()  # what a shell step's process runs before its program (here: this one)
    assert frozenset(os.sched_getaffinity(0)) == restored
