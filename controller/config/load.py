"""Load and validate a network file into a :class:`controller.config.model.Model`.

The file format is the contract in ``network-schema.md``. Validation is
strict (unknown keys, wrong types, dangling references and conflicts are all
errors) and complete: every problem in the file is collected, each naming its
YAML path (``vms.web1.network: unknown network 'tenant-c'``), and reported
together in one :class:`ConfigError`.

Only the standard library and PyYAML are imported, so the Mininet scripts can
use this module under Debian's system Python.

>>> model = loads_model('''
... switches: {s1: {dpid: 0x1}}
... networks: {blue: {vlan: 10}}
... vms: {h1: {switch: s1, port: 1, network: blue, ip: 10.0.0.1/24}}
... ''')
>>> model.vms[0].ip
IPv4Interface('10.0.0.1/24')
"""

from __future__ import annotations

import gc
import os
from collections.abc import Hashable, Iterable
from typing import Any

import yaml

from controller.config import overlay as config_overlay
from controller.config import policy as config_policy
from controller.config import routing
from controller.config import topology as topology
from controller.config import uplinks as config_uplinks
from controller.config.balancers import parse_load_balancers
from controller.config.base import (
    Ctx,
    Known,
    int_in,
    mapping,
    named,
    optional,
    positive_number,
    references,
    string,
)
from controller.config.mirrors import parse_mirrors
from controller.config.model import ControllerSettings, Model
from controller.config.scalars import NUMBER_FIRST, NUMBER_LIKE, PlainBool, PlainNumber

__all__ = ["ConfigError", "load_model", "loads_model", "parse_model"]

_TOP_KEYS = (
    "controller",
    "switches",
    "links",
    "networks",
    "vms",
    "acls",
    "load_balancers",
    "mirrors",
    "routers",
    "uplinks",
    "floating_ips",
    "hosts",
    "overlay",
)
_NAMED_SECTIONS = (
    "switches",
    "networks",
    "vms",
    "acls",
    "load_balancers",
    "mirrors",
    "routers",
    "uplinks",
    "floating_ips",
)
_CONTROLLER_KEYS = (
    "metrics_host",
    "metrics_port",
    "host_timeout",
    "lldp_interval",
    "stats_interval",
    "max_hosts_per_port",
    "packet_in_rate",
    "apps",
    "api_port",
    "api_token_file",
    "coordination",
)


class ConfigError(Exception):
    """The network file is invalid.

    ``errors`` holds every problem, one line each, in file order; ``str(e)``
    is those lines joined by newlines.
    """

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        super().__init__("\n".join(self.errors))


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML has it (about 3x faster on a 5,000-rule file)."""


class _StrictLoader(_BaseLoader):
    """A safe loader that rejects a key repeated within one mapping and keeps
    number-like plain scalars as written.

    Every plain scalar that YAML 1.1 would turn into an int, float or bool,
    or that looks like a number (:data:`~controller.config.scalars.NUMBER_LIKE`),
    is constructed as its text (:class:`PlainNumber`, :class:`PlainBool`), so
    the checks read it by the file's rules (:mod:`controller.config.scalars`)
    instead of YAML 1.1's octal, base 60 and yes/no. A timestamp-like plain
    scalar stays a string.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable; the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        mapping: dict[Hashable, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def construct_plain_number(self, node: yaml.ScalarNode) -> PlainNumber:
        return PlainNumber(self.construct_scalar(node))

    def construct_plain_bool(self, node: yaml.ScalarNode) -> PlainBool:
        return PlainBool(self.construct_scalar(node))

    def construct_text(self, node: yaml.ScalarNode) -> str:
        return str(self.construct_scalar(node))


_NUMBER_TAG = "tag:vmn,2024:number"
"""The tag :data:`NUMBER_LIKE` scalars resolve to (those YAML 1.1 already reads as numbers keep theirs)."""
_StrictLoader.add_implicit_resolver(_NUMBER_TAG, NUMBER_LIKE, list(NUMBER_FIRST))
for _tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", _NUMBER_TAG):
    _StrictLoader.add_constructor(_tag, _StrictLoader.construct_plain_number)
_StrictLoader.add_constructor("tag:yaml.org,2002:bool", _StrictLoader.construct_plain_bool)
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _StrictLoader.construct_text)


def load_model(path: str | os.PathLike[str]) -> Model:
    """Read, parse and validate the network file at ``path``.

    Raises
    ------
    ConfigError
        The file cannot be read, is not valid YAML (the message names the
        file, line and column), or fails validation.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as stream:
            raw = stream.read()
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read: {exc.strerror or exc}"]) from exc
    return parse_model(_load_yaml(raw, name))


def loads_model(text: str | bytes, source: str = "<string>") -> Model:
    """Like :func:`load_model` for YAML ``text``; ``source`` names it in YAML errors."""
    return parse_model(_load_yaml(text, source))


def _load_yaml(text: str | bytes, source: str) -> object:
    """Parse YAML with garbage collection paused: the parse allocates many
    small objects and no cycles, and collections triggered by it used to
    cost more than the parse itself on large files."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        detail = ": ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError([f"{where}: invalid YAML: {detail}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from exc
    finally:
        if enabled:
            gc.enable()


def parse_model(data: object) -> Model:
    """Validate ``data`` (what ``yaml.safe_load`` returned) and build the model.

    ``None`` (an empty file) is treated as an empty mapping. Collections in
    the model are sorted by name, so equal files give equal models.

    Raises
    ------
    ConfigError
        With every validation error found, each prefixed by its YAML path.
    """
    ctx = Ctx()
    top = mapping(ctx, {} if data is None else data, required=("switches",), optional=_TOP_KEYS)
    if top is None:
        raise ConfigError(ctx.errors)
    if "vms" in top and "networks" not in top:
        ctx.at("networks").error("required when vms are declared")
    raw = {key: named(ctx.at(key), top[key]) if key in top else {} for key in _NAMED_SECTIONS}
    known = Known(
        switches=_names(raw["switches"]),
        networks=_names(raw["networks"]),
        vms=_names(raw["vms"]),
        acls=_names(raw["acls"]),
    )
    settings = _controller(ctx.at("controller"), top["controller"]) if "controller" in top else None
    parts = config_overlay.split(raw["switches"], raw["networks"])
    scopes = config_overlay.bridge_scopes(top.get("hosts"), parts)
    switches = topology.parse_switches(ctx.at("switches"), parts.switches, scopes) if "switches" in top else []
    links, link_ports = topology.parse_links(ctx.at("links"), top.get("links", []), known)
    networks = topology.parse_networks(ctx.at("networks"), parts.networks or {}, known)
    placed = config_overlay.apply(ctx, top, parts, switches, networks)
    switches, networks = placed.switches, placed.networks
    vms = topology.parse_vms(ctx.at("vms"), raw["vms"] or {}, known, link_ports)
    acls = config_policy.parse_acls(ctx.at("acls"), raw["acls"] or {})
    config_policy.check_list_sizes(
        ctx,
        acls,
        [
            (f"{kind}.{x.name}.{key}", getattr(x, key))
            for kind, xs in (("vms", vms), ("networks", networks))
            for x in xs
            for key in ("acl_in", "acl_out")
        ],
    )
    balancers = parse_load_balancers(ctx.at("load_balancers"), raw["load_balancers"] or {}, known, vms)
    mirrors = parse_mirrors(ctx.at("mirrors"), raw["mirrors"] or {}, known, vms, link_ports)
    routing.check_vm_addresses(ctx, networks, vms)
    routing.check_vips(ctx, networks, balancers)
    uplinks = config_uplinks.parse_uplinks(ctx.at("uplinks"), raw["uplinks"] or {}, known, vms, link_ports, mirrors)
    uplink_names = frozenset(raw["uplinks"] or {})
    routers = routing.parse_routers(
        ctx.at("routers"), raw["routers"] or {}, known, networks, vms, uplinks, uplink_names
    )
    fips = config_uplinks.parse_floating_ips(
        ctx.at("floating_ips"), raw["floating_ips"] or {}, known, vms, routers, uplinks
    )
    if ctx.errors:
        raise ConfigError(ctx.errors)
    return Model(
        controller=settings or ControllerSettings(),
        switches=tuple(sorted(switches, key=lambda s: s.name)),
        links=tuple(sorted(links, key=topology.link_key)),
        networks=tuple(sorted(networks, key=lambda n: n.name)),
        vms=tuple(sorted(vms, key=lambda v: v.name)),
        acls=tuple(sorted(acls, key=lambda a: a.name)),
        load_balancers=tuple(sorted(balancers, key=lambda b: b.name)),
        mirrors=tuple(sorted(mirrors, key=lambda m: m.name)),
        routers=tuple(sorted(routers, key=lambda r: r.name)),
        hosts=placed.hosts,
        overlay=placed.overlay,
        uplinks=tuple(sorted(uplinks, key=lambda u: u.name)),
        floating_ips=tuple(fips),
    )


def _names(section: dict[str, object] | None) -> frozenset[str] | None:
    return None if section is None else frozenset(section)


ELECTION_BACKENDS = ("zookeeper", "kazoo", "redis", "memcached")
"""tooz backends that implement leader election (``run_elect_coordinator``), as of tooz 9."""


def _backend_url(ctx: Ctx, value: object) -> str | None:
    """A tooz backend URL whose driver can elect a leader (``zookeeper://10.0.0.9:2181``)."""
    url = string(ctx, value)
    if url is None:
        return None
    scheme, sep, rest = url.partition("://")
    if not sep or not rest:
        ctx.error(f"expected a tooz backend URL such as zookeeper://10.0.0.9:2181, got {url!r}")
        return None
    if scheme not in ELECTION_BACKENDS:
        ctx.error(f"backend {scheme!r} cannot elect a leader; use one of {', '.join(ELECTION_BACKENDS)}")
        return None
    return url


def _controller(ctx: Ctx, value: object) -> ControllerSettings | None:
    d = ControllerSettings()
    m = mapping(ctx, value, optional=_CONTROLLER_KEYS)
    if m is None:
        return None
    return ControllerSettings(
        metrics_host=optional(ctx, m, "metrics_host", string, d.metrics_host),
        metrics_port=optional(ctx, m, "metrics_port", int_in(0, 65535), d.metrics_port),
        host_timeout=optional(ctx, m, "host_timeout", positive_number, d.host_timeout),
        lldp_interval=optional(ctx, m, "lldp_interval", positive_number, d.lldp_interval),
        max_hosts_per_port=optional(ctx, m, "max_hosts_per_port", int_in(1), d.max_hosts_per_port),
        packet_in_rate=optional(ctx, m, "packet_in_rate", int_in(1), d.packet_in_rate),
        stats_interval=optional(ctx, m, "stats_interval", positive_number, d.stats_interval),
        apps=optional(ctx, m, "apps", references(None, "app"), d.apps),
        api_port=optional(ctx, m, "api_port", int_in(0, 65535), d.api_port),
        api_token_file=optional(ctx, m, "api_token_file", string, d.api_token_file),
        coordination=optional(ctx, m, "coordination", _backend_url, d.coordination),
    )
