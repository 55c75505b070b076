"""What an app is: a function of a fabric snapshot to rule segments.

A *segment* is a named group of rules an app owns (all static rules of one
switch, the rules of one learned host, ...). The core replaces segments
whole and sends only the rules that changed, so an app that recomputes
one segment touches nothing else.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Protocol

from controller.fabric.view import FabricView, Host
from controller.flows.rules import Rule

SegKey = tuple[Hashable, ...]
Segments = dict[SegKey, Mapping[int, frozenset[Rule]]]
"""Segment key -> {dpid: rules}."""


class App(Protocol):
    """A pipeline app. ``compile`` must be pure and deterministic."""

    name: str

    def compile(self, view: FabricView, hosts: Mapping[tuple[int, str], Host]) -> Segments:
        """Every segment this app wants, given the snapshot and the learned hosts."""
        ...


def per_switch(key: str, view: FabricView, rules_of: "RulesOfSwitch") -> Segments:
    """One segment ``(key, dpid)`` per connected switch holding ``rules_of(view, dpid)``."""
    return {(key, dpid): {dpid: frozenset(rules_of(view, dpid))} for dpid in view.dpids}


class RulesOfSwitch(Protocol):
    def __call__(self, view: FabricView, dpid: int) -> list[Rule]:
        ...
