"""The learned-host table with per-port counts (O(1) limit checks)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping

from controller.fabric.labels import in_label_space, label_key
from controller.fabric.view import Host


class HostTable(Mapping[tuple[int, str], Host]):
    """(vlan, mac) -> Host, plus how many hosts each (dpid, port) holds."""

    def __init__(self) -> None:
        self._hosts: dict[tuple[int, str], Host] = {}
        self._per_port: Counter[tuple[int, int]] = Counter()
        self._per_vlan: Counter[int] = Counter()
        self._by_label: dict[tuple[int, int, int], set[tuple[int, str]]] = {}

    def __getitem__(self, key: tuple[int, str]) -> Host:
        return self._hosts[key]

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return iter(self._hosts)

    def __len__(self) -> int:
        return len(self._hosts)

    def get(self, key: tuple[int, str], default: Host | None = None) -> Host | None:  # type: ignore[override]
        return self._hosts.get(key, default)

    def on_port(self, dpid: int, port: int) -> int:
        return self._per_port[(dpid, port)]

    def put(self, host: Host) -> Host | None:
        """Insert or move ``host``; return the entry it replaced."""
        old = self.remove(host.vlan, host.mac)
        self._hosts[(host.vlan, host.mac)] = host
        self._per_port[(host.dpid, host.port)] += 1
        self._per_vlan[host.vlan] += 1
        self._by_label.setdefault(label_key(host.vlan, host.dpid, host.mac), set()).add((host.vlan, host.mac))
        return old

    def remove(self, vlan: int, mac: str) -> Host | None:
        old = self._hosts.pop((vlan, mac), None)
        if old is not None:
            self._per_vlan[old.vlan] -= 1
            key = label_key(old.vlan, old.dpid, old.mac)
            self._by_label[key].discard((old.vlan, old.mac))
            if not self._by_label[key]:
                del self._by_label[key]
            self._per_port[(old.dpid, old.port)] -= 1
            if not self._per_port[(old.dpid, old.port)]:
                del self._per_port[(old.dpid, old.port)]
        return old

    def label_unique(self, host: Host) -> bool:
        """May ``host`` be forwarded by its label MAC (:mod:`controller.fabric.labels`)?

        Only when no other host of its network on its switch would share
        that label MAC, and its own MAC is not in the label space (such a
        MAC, as a kernel may draw at random, is forwarded as it is).
        """
        return (
            not in_label_space(host.mac) and len(self._by_label.get(label_key(host.vlan, host.dpid, host.mac), ())) == 1
        )

    def sharing_label(self, host: Host) -> list[Host]:
        """The hosts with ``host``'s label key (itself included if present), sorted by MAC."""
        keys = sorted(self._by_label.get(label_key(host.vlan, host.dpid, host.mac), ()))
        return [self._hosts[k] for k in keys]

    def per_port(self) -> Mapping[tuple[int, int], int]:
        """(dpid, port) -> how many hosts were learned there (ports with none left out)."""
        return self._per_port

    def count_by_vlan(self) -> Mapping[int, int]:
        return self._per_vlan
