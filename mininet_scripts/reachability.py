"""Which VMs of a network file should reach each other, and did they.

Pure logic behind ``vmn_mininet.py --check``: the expected cases (read from
the JSON of ``python -m controller.tools.expect``, which derives them from
``vmn trace``, or, without it, "same network and subnet reaches"), the
probing schedule (with the probe and the clock passed in), the comparison,
and the printed matrix. Nothing here touches Mininet, so it is testable
with hand-built models.

A *pair* is an ordered ``(from_vm, target)``: ``target`` is a VM name or
``vip:NAME`` (a load balancer). A *matrix* maps pairs to a bool (reaches or
not); a *plan* maps them to a :class:`Case` (what to probe and what it
should see).

>>> from ipaddress import IPv4Interface
>>> from controller.config.model import Model, Network, Vm
>>> vms = (Vm("a1", "s1", 1, "a", IPv4Interface("10.0.0.1/24")),
...        Vm("b1", "s1", 2, "b", IPv4Interface("10.0.0.2/24")))
>>> expected_matrix(Model(networks=(Network("a", 1), Network("b", 2)), vms=vms))
{('a1', 'b1'): False, ('b1', 'a1'): False}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from controller.config.model import Model, Vm

Pair = tuple[str, str]
Matrix = Mapping[Pair, bool]
Probe = Callable[[tuple[Pair, ...]], Mapping[Pair, bool]]
"""Tries every given pair once (concurrently, if it likes); True where it answered."""

SELF = "."
MISMATCH = "!"
KINDS = ("l2", "routed", "isolated", "denied", "vip")
"""The case labels, in the order the summary counts them (see :mod:`controller.tools.expect`)."""
LABELS = {"l2": "l2", "routed": "rt", "isolated": "iso", "denied": "acl", "vip": "vip"}
"""How a matrix cell names each kind."""
LEGEND = (
    "cell: case expected/observed (y reaches, n does not, ! differs); "
    "l2 same network, rt routed, iso isolated, acl denied by an ACL, vip a load balancer's VIP"
)


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
class Case:
    """One probe: what it sends (``proto`` to ``ip``, ``port``), its kind (:data:`KINDS`), whether it should reach, and why."""

    kind: str
    reach: bool
    ip: str
    proto: str = "icmp"
    port: int | None = None
    why: tuple[str, ...] = ()


Plan = Mapping[Pair, Case]
Listener = tuple[str, str, int]
"""(vm, proto, port): a server the check starts in a VM before probing."""


def model_plan(model: Model) -> dict[Pair, Case]:
    """The plan without ``vmn trace``: pings, reaching iff :func:`can_reach` (ACLs, routers and VIPs ignored)."""
    vms = {vm.name: vm for vm in probed_vms(model)}
    plan = {}
    for pair, reach in expected_matrix(model).items():
        ip = vms[pair[1]].ip
        assert ip is not None
        plan[pair] = Case("l2" if reach else "isolated", reach, str(ip.ip))
    return plan


def plan_from_json(text: str) -> tuple[dict[Pair, Case], tuple[Listener, ...]]:
    """The plan and listeners in the JSON of ``python -m controller.tools.expect``.

    Raises:
        ValueError: not that JSON (a missing key, an unknown kind or protocol).
    """
    try:
        data = json.loads(text)
        plan = {}
        for item in data["cases"]:
            case = Case(
                str(item["kind"]),
                bool(item["reach"]),
                str(item["ip"]),
                str(item["proto"]),
                None if item["port"] is None else int(item["port"]),
                tuple(str(line) for line in item["why"]),
            )
            if case.kind not in KINDS or case.proto not in ("icmp", "tcp"):
                raise ValueError(f"case {item['src']} -> {item['target']}: kind {case.kind!r}, proto {case.proto!r}")
            plan[(str(item["src"]), str(item["target"]))] = case
        listeners = tuple((str(x["vm"]), str(x["proto"]), int(x["port"])) for x in data["listeners"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a plan of controller.tools.expect: {exc!r}") from None
    return plan, listeners


def reaches(plan: Plan) -> dict[Pair, bool]:
    """The expected matrix of a plan."""
    return {pair: case.reach for pair, case in plan.items()}


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


def _targets(plan: Plan) -> tuple[list[str], list[str]]:
    """Senders (sorted) and targets (VMs sorted, then VIPs sorted)."""
    senders = sorted({src for src, _ in plan})
    targets = {dst for _, dst in plan} | set(senders)
    return senders, sorted(targets, key=lambda name: (name.startswith("vip:"), name))


def _yn(value: bool | None) -> str:
    return "?" if value is None else "y" if value else "n"


def _cell(pair: Pair, plan: Plan, measured: Matrix) -> str:
    if pair[0] == pair[1]:
        return SELF
    case = plan.get(pair)
    if case is None:
        return ""
    seen = measured.get(pair)
    mark = MISMATCH if seen != case.reach else ""
    return f"{LABELS[case.kind]} {_yn(case.reach)}/{_yn(seen)}{mark}"


def format_matrix(plan: Plan, measured: Matrix) -> str:
    """The cases as a matrix: rows are senders, columns targets (VMs, then VIPs), names sorted.

    Each cell is the case's label (:data:`LABELS`), then expected/observed
    (``y``/``n``, ``?`` not measured) and ``!`` when they differ; ``.`` is
    the diagonal, an empty cell a pair not probed.

    >>> plan = {("a", "b"): Case("routed", True, "10.0.2.1"), ("b", "a"): Case("denied", False, "10.0.1.1")}
    >>> print(format_matrix(plan, {("a", "b"): True, ("b", "a"): True}))
    from\\to  a         b
    a        .         rt y/y
    b        acl n/y!  .
    """
    senders, targets = _targets(plan)
    cells = {(src, dst): _cell((src, dst), plan, measured) for src in senders for dst in targets}
    head = "from\\to"
    first = max([len(head)] + [len(name) for name in senders]) + 2
    width = max([len(cell) for cell in cells.values()] + [len(name) for name in targets]) + 2
    lines = [(head.ljust(first) + "".join(name.ljust(width) for name in targets)).rstrip()]
    for src in senders:
        lines.append((src.ljust(first) + "".join(cells[(src, dst)].ljust(width) for dst in targets)).rstrip())
    return "\n".join(lines)


def _describe(value: bool | None) -> str:
    if value is None:
        return "not measured"
    return "reachable" if value else "unreachable"


def _what(pair: Pair, case: Case) -> str:
    to = f"{case.ip}:{case.port}/{case.proto}" if case.port is not None else case.ip
    return f"{pair[0]} -> {pair[1]} ({to})"


def summary(plan: Plan, measured: Matrix) -> str:
    """One line with the counts per kind; on mismatches, each one spelled out after it, with its why.

    >>> summary({("a", "b"): Case("l2", True, "10.0.0.2")}, {("a", "b"): True})
    'reachability OK: 1 cases: 1 l2, 0 routed, 0 isolated, 0 denied, 0 vip (0 reach); 0 mismatches'
    """
    expected = reaches(plan)
    bad = mismatches(expected, measured)
    count = {kind: sum(1 for case in plan.values() if case.kind == kind) for kind in KINDS}
    vip_reach = sum(1 for case in plan.values() if case.kind == "vip" and case.reach)
    kinds = ", ".join(f"{count[kind]} {kind}" for kind in KINDS)
    line = (
        f"reachability {'OK' if not bad else 'MISMATCH'}: {len(plan)} cases: {kinds} ({vip_reach} reach); "
        f"{len(bad)} mismatches"
    )
    details = []
    for pair in bad:
        case = plan[pair]
        details.append(
            f"  {_what(pair, case)}, {case.kind}: expected {_describe(case.reach)}, "
            f"measured {_describe(measured.get(pair))}"
        )
        details += [f"      {line}" for line in case.why]
    return "\n".join([line] + details)


def examples(plan: Plan) -> str:
    """One case of each kind present (the first by name; for VIPs one that reaches), each with its why, indented.

    >>> print(examples({("a", "b"): Case("routed", True, "10.0.2.1", why=("routed by r1",)),
    ...                 ("a", "c"): Case("l2", True, "10.0.1.3")}))
    l2        a -> c (10.0.1.3)
                no router or ACL involved
    routed    a -> b (10.0.2.1)
                routed by r1
    """
    lines = []
    for kind in KINDS:
        found = sorted(pair for pair, case in plan.items() if case.kind == kind)
        found.sort(key=lambda pair: not plan[pair].reach)  # stable: reaching ones first
        if found:
            pair = found[0]
            lines.append(f"{kind:<9} {_what(pair, plan[pair])}")
            lines += [f"{'':12}{why}" for why in plan[pair].why or ("no router or ACL involved",)]
    return "\n".join(lines)
