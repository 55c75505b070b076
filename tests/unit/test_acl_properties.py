"""Property: ``vmn trace`` verdicts equal first-match ACL semantics computed here, independently.

Random ACLs (a few rules each over TCP/UDP ports, ICMP, addresses; allow or
deny, some allows stateful) are named in random ``acl_in`` and ``acl_out``
lists of VMs and of their network, on two linked switches. For a random
packet between two VMs the model below says:

- the packet is delivered iff every list on its way allows it: the
  sender's VM and network ``acl_in``, the receiver's network and VM
  ``acl_out`` (first match wins in each list; no match denies);
- its reply is delivered iff a stateful allow decided one of those four
  lists, or the reply itself passes the lists on its own way back (a
  stateful allow deciding a list on the reply's way opens nothing: the reply
  is not a new connection, README "ACLs").
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from controller.config import loads_model
from controller.tools.trace import build_fabric, trace

VMS = {"web1": ("s1", 1, "10.0.0.1"), "web2": ("s1", 2, "10.0.0.2"), "db": ("s2", 3, "10.0.0.3")}
PROTOS = ("tcp", "udp", "icmp")
PORTS = (22, 53, 80)
CLIENT_PORT = 40000  # what vmn trace sends from


@dataclass(frozen=True)
class AclRule:
    proto: str | None
    port: int | None
    dst: str | None
    src: str | None
    allow: bool
    stateful: bool

    def matches(self, proto: str, src: str, dst: str, sport: int | None, dport: int | None) -> bool:
        if self.proto is not None and self.proto != proto:
            return False
        if self.port is not None and self.port != dport:
            return False
        return (self.dst is None or self.dst == dst) and (self.src is None or self.src == src)

    def as_yaml(self) -> dict[str, object]:
        match: dict[str, object] = {}
        if self.proto is not None:
            match["ip_proto"] = self.proto
            if self.port is not None and self.proto != "icmp":
                match[f"{self.proto}_dst"] = self.port
        if self.dst is not None:
            match["ipv4_dst"] = self.dst
        if self.src is not None:
            match["ipv4_src"] = self.src
        out: dict[str, object] = {"action": "allow" if self.allow else "deny"}
        if match:
            out["match"] = match
        if self.stateful and self.allow:
            out["stateful"] = True
        return out


@st.composite
def acl_rules(draw: st.DrawFn) -> AclRule:
    proto = draw(st.sampled_from((None, "tcp", "udp", "icmp")))
    port = draw(st.sampled_from((None,) + PORTS)) if proto in ("tcp", "udp") else None
    addresses = st.sampled_from((None,) + tuple(ip for _, _, ip in VMS.values()))
    allow = draw(st.booleans())
    return AclRule(proto, port, draw(addresses), draw(addresses), allow, allow and draw(st.booleans()))


Acls = dict[str, tuple[AclRule, ...]]
Lists = dict[tuple[str, str], str | None]
"""(VM name or "net", "acl_in" / "acl_out") -> the ACL named there, if any."""


@dataclass(frozen=True)
class Policy:
    acls: Acls
    lists: Lists

    def network_file(self) -> str:
        net: dict[str, object] = {"vlan": 100}
        vms: dict[str, object] = {}
        for name, (switch, port, ip) in VMS.items():
            mac = f"02:00:00:00:00:0{port}"
            vms[name] = {"switch": switch, "port": port, "network": "red", "ip": f"{ip}/24", "mac": mac}
        for (owner, key), acl in self.lists.items():
            if acl is not None:
                target = net if owner == "net" else vms[owner]
                assert isinstance(target, dict)
                target[key] = [acl]
        doc = {
            "switches": {"s1": {"dpid": 1}, "s2": {"dpid": 2}},
            "links": [["s1:10", "s2:10"]],
            "networks": {"red": net},
            "vms": vms,
            "acls": {name: [r.as_yaml() for r in rules] for name, rules in self.acls.items()},
        }
        return yaml.safe_dump(doc, sort_keys=True)

    def decide(self, owner: str, key: str, proto: str, src: str, dst: str, port: int | None) -> tuple[bool, bool]:
        """(allowed, by a stateful rule) for one list; no list allows."""
        acl = self.lists.get((owner, key))
        if acl is None:
            return True, False
        sport, dport = (CLIENT_PORT, port) if port is not None else (None, None)
        for rule in self.acls[acl]:
            if rule.matches(proto, src, dst, sport, dport):
                return rule.allow, rule.allow and rule.stateful
        return False, False

    def expect(self, a: str, b: str, proto: str, port: int | None) -> tuple[bool, bool | None]:
        """(request delivered, reply delivered or None when the request is not)."""
        ip_a, ip_b = VMS[a][2], VMS[b][2]
        way = [(a, "acl_in"), ("net", "acl_in"), ("net", "acl_out"), (b, "acl_out")]
        there = [self.decide(o, k, proto, ip_a, ip_b, port) for o, k in way]
        if not all(ok for ok, _ in there):
            return False, None
        if any(stateful for _, stateful in there):
            return True, True
        back_way = [(b, "acl_in"), ("net", "acl_in"), ("net", "acl_out"), (a, "acl_out")]
        # the reply goes from port `port` back to the client's port: only rules without a port match it
        # unless they name the client's port, which the rules here never do
        back = [self._decide_reply(o, k, proto, ip_b, ip_a, port) for o, k in back_way]
        return True, all(back)

    def _decide_reply(self, owner: str, key: str, proto: str, src: str, dst: str, port: int | None) -> bool:
        acl = self.lists.get((owner, key))
        if acl is None:
            return True
        dport = CLIENT_PORT if port is not None else None
        for rule in self.acls[acl]:
            if rule.matches(proto, src, dst, port, dport):
                return rule.allow
        return False


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    names = ("p", "q", "r")
    acls = {n: tuple(draw(st.lists(acl_rules(), min_size=1, max_size=4))) for n in names}
    owners = [*VMS, "net"]
    lists = {(o, k): draw(st.sampled_from((None, *names))) for o in owners for k in ("acl_in", "acl_out")}
    return Policy(acls, lists)


def _reply_let_out_by_a_stateful_acl_in(server: str) -> Policy:
    """web1's ``acl_out`` denies everything; ``server``'s ``acl_in`` allows everything, statefully."""
    allow = AclRule(None, None, None, None, allow=True, stateful=True)
    deny = AclRule(None, None, None, None, allow=False, stateful=False)
    lists: Lists = {(o, k): None for o in (*VMS, "net") for k in ("acl_in", "acl_out")}
    lists[("web1", "acl_out")], lists[(server, "acl_in")] = "q", "p"
    return Policy({"p": (allow,), "q": (deny,), "r": (deny,)}, lists)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# web1 opens tcp/22 to a server whose stateful acl_in lets the reply out: web1's acl_out still denies it
@example(_reply_let_out_by_a_stateful_acl_in("web2"), [(["web1", "web2", "db"], "tcp", 22)])
@example(_reply_let_out_by_a_stateful_acl_in("db"), [(["web1", "db", "web2"], "tcp", 22)])
@given(
    policies(),
    st.lists(
        st.tuples(st.permutations(list(VMS)), st.sampled_from(PROTOS), st.sampled_from(PORTS)), min_size=3, max_size=6
    ),
)
def test_trace_agrees_with_first_match_semantics_in_and_out(
    policy: Policy, cases: list[tuple[list[str], str, int]]
) -> None:
    fabric = build_fabric(loads_model(policy.network_file()))
    for order, proto, port in cases:
        a, b = order[0], order[1]
        p = None if proto == "icmp" else port
        want_there, want_back = policy.expect(a, b, proto, p)
        got = trace(fabric, a, VMS[b][2], proto, p)  # type: ignore[arg-type]
        assert got.forward.delivered == want_there, (a, b, proto, p, policy.network_file())
        got_back = got.reply.delivered if got.reply is not None else None
        assert got_back == want_back, (a, b, proto, p, got.reply, policy.network_file())
