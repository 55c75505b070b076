"""Which VMs of a network file should reach each other, and did they.

Pure logic behind ``vmn_mininet.py --check``: the expected matrix a
:class:`~controller.config.model.Model` implies, the probing schedule (with the
probe and the clock passed in), the comparison, and the printed matrix.
Nothing here touches Mininet, so it is testable with hand-built models.

A *pair* is an ordered ``(from_vm, to_vm)`` of VM names; a *matrix* maps
every pair of distinct VMs that have an ip to a bool (reachable or not).

>>> from ipaddress import IPv4Interface
>>> from controller.config.model import Model, Network, Vm
>>> vms = (Vm("a1", "s1", 1, "a", IPv4Interface("10.0.0.1/24")),
...        Vm("b1", "s1", 2, "b", IPv4Interface("10.0.0.2/24")))
>>> expected_matrix(Model(networks=(Network("a", 1), Network("b", 2)), vms=vms))
{('a1', 'b1'): False, ('b1', 'a1'): False}
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from controller.config.model import Model, Vm

Pair = tuple[str, str]
Matrix = Mapping[Pair, bool]
Probe = Callable[[tuple[Pair, ...]], Mapping[Pair, bool]]
"""Tries every given pair once (concurrently, if it likes); True where it answered."""

REACHABLE = "ok"
ISOLATED = "--"
MISMATCH = "X"
SELF = "."


def probed_vms(model: Model) -> tuple[Vm, ...]:
    """The VMs that take part in the check: those with an ip, in name order."""
    return tuple(vm for vm in model.vms if vm.ip is not None)


def can_reach(src: Vm, dst: Vm) -> bool:
    """Whether ``src`` should get ping replies from ``dst``.

    Both need an ip, the same network, and each one's ip inside the
    other's subnet (hosts only have a route for their own subnet).
    ACLs and load balancers are not taken into account.
    """
    if src.ip is None or dst.ip is None or src.network != dst.network:
        return False
    return dst.ip.ip in src.ip.network and src.ip.ip in dst.ip.network


def expected_matrix(model: Model) -> dict[Pair, bool]:
    """Every ordered pair of distinct VMs with an ip -> whether it should reach."""
    vms = probed_vms(model)
    return {(src.name, dst.name): can_reach(src, dst) for src in vms for dst in vms if src.name != dst.name}


@dataclass(frozen=True)
class Schedule:
    """How hard :func:`measure` tries.

    Pairs expected reachable go first: each is retried until it answers or
    ``deadline`` (on the clock passed to :func:`measure`) has passed, and is
    tried at least once. Only then, with learning settled, pairs expected
    unreachable are tried ``negative_tries`` times each (all must fail),
    deadline or not.
    """

    deadline: float
    negative_tries: int = 2


def pending_pairs(
    expected: Matrix,
    tries: Mapping[Pair, int],
    answered: Collection[Pair],
    now: float,
    schedule: Schedule,
) -> tuple[Pair, ...]:
    """The pairs to probe in the next round, in sorted order (see :class:`Schedule`)."""

    def positive(pair: Pair) -> bool:
        return expected[pair] and pair not in answered and (tries.get(pair, 0) == 0 or now < schedule.deadline)

    def negative(pair: Pair) -> bool:
        return not expected[pair] and pair not in answered and tries.get(pair, 0) < schedule.negative_tries

    positives = tuple(pair for pair in sorted(expected) if positive(pair))
    return positives or tuple(pair for pair in sorted(expected) if negative(pair))


def measure(expected: Matrix, probe: Probe, clock: Callable[[], float], schedule: Schedule) -> dict[Pair, bool]:
    """Probe in rounds until :func:`pending_pairs` is empty.

    Returns:
        The measured matrix: a pair is True iff any of its probes answered.
    """
    tries: dict[Pair, int] = {}
    answered: set[Pair] = set()
    while True:
        pairs = pending_pairs(expected, tries, answered, clock(), schedule)
        if not pairs:
            return {pair: pair in answered for pair in expected}
        results = probe(pairs)
        for pair in pairs:
            tries[pair] = tries.get(pair, 0) + 1
            if results.get(pair, False):
                answered.add(pair)


def mismatches(expected: Matrix, measured: Matrix) -> tuple[Pair, ...]:
    """Sorted pairs whose measured value differs from (or is missing against) the expected one."""
    return tuple(pair for pair in sorted(expected) if measured.get(pair) != expected[pair])


def _names(expected: Matrix) -> list[str]:
    return sorted({name for pair in expected for name in pair})


def _cell(pair: Pair, expected: Matrix, measured: Matrix) -> str:
    if pair[0] == pair[1]:
        return SELF
    if pair not in expected:
        return ""
    if measured.get(pair) != expected[pair]:
        return MISMATCH
    return REACHABLE if expected[pair] else ISOLATED


def format_matrix(expected: Matrix, measured: Matrix) -> str:
    """The matrix as text: rows are senders, columns receivers, names sorted.

    Cells: ``ok`` reachable as expected, ``--`` isolated as expected,
    ``X`` differs from the expectation, ``.`` the diagonal.

    >>> print(format_matrix({("a", "b"): True, ("b", "a"): True},
    ...                     {("a", "b"): True, ("b", "a"): False}))
    from\\to  a   b
    a        .   ok
    b        X   .
    """
    names = _names(expected)
    head = "from\\to"
    first = max([len(head)] + [len(name) for name in names]) + 2
    width = max([len(REACHABLE)] + [len(name) for name in names]) + 2
    lines = [(head.ljust(first) + "".join(name.ljust(width) for name in names)).rstrip()]
    for src in names:
        cells = "".join(_cell((src, dst), expected, measured).ljust(width) for dst in names)
        lines.append((src.ljust(first) + cells).rstrip())
    return "\n".join(lines)


def _describe(value: bool | None) -> str:
    if value is None:
        return "not measured"
    return "reachable" if value else "unreachable"


def summary(expected: Matrix, measured: Matrix) -> str:
    """One line with the counts; on mismatches, each one spelled out after it.

    >>> summary({("a", "b"): True}, {("a", "b"): True})
    'reachability OK: 1 pairs, 1 reachable, 0 isolated, 0 mismatches'
    """
    bad = mismatches(expected, measured)
    reachable = sum(1 for value in expected.values() if value)
    line = (
        f"reachability {'OK' if not bad else 'MISMATCH'}: {len(expected)} pairs, "
        f"{reachable} reachable, {len(expected) - reachable} isolated, {len(bad)} mismatches"
    )
    details = [
        f"  {src} -> {dst}: expected {_describe(expected[(src, dst)])}, measured {_describe(measured.get((src, dst)))}"
        for src, dst in bad
    ]
    return "\n".join([line] + details)
