"""The REST API over real HTTP, on the real core with fake switches (:mod:`controller.api.testing`)."""

from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.api import server
from controller.api.bridge import ControllerBridge
from controller.api.testing import FakeShim
from controller.config import load_model
from controller.flows.pipeline import T_LEARN
from controller.tools.fakefabric import FakeFabric
from controller.tools.portplan import port_numbers

NET = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks: {red: {vlan: 100}, blue: {vlan: 200}}
vms:
  client: {switch: s1, port: 1, network: red, ip: 10.70.0.1/24, mac: "02:00:00:00:01:01", acl_in: [client-out]}
  db: {switch: s2, port: vnet3, network: red, ip: 10.70.0.3/24, mac: "02:00:00:00:02:03"}
  guest: {switch: s2, port: 4, network: blue, ip: 10.70.0.4/24}
  web1: {switch: s2, port: 5, network: red, ip: 10.70.0.5/24, mac: "02:00:00:00:02:05"}
acls:
  client-out:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow}
    - {match: {ip_proto: icmp}, action: allow}
    - {match: {ip_proto: tcp, tcp_dst: 5432, ipv4_dst: 10.70.0.3}, action: allow, stateful: true}
load_balancers:
  web: {vip: 10.70.0.100, network: red, protocol: tcp, port: 80, backends: [web1, db]}
"""


@dataclass
class Api:
    url: str
    shim: FakeShim
    cfg: Path

    def call(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw, status, kind = resp.read(), resp.status, resp.headers.get("content-type", "")
        except urllib.error.HTTPError as err:
            raw, status, kind = err.read(), err.code, err.headers.get("content-type", "")
        return status, json.loads(raw) if "json" in kind else raw.decode()


def learn(fabric: FakeFabric, dpid: int, port: int, vlan: int, mac: str) -> None:
    """A frame from ``mac`` reaches the learn table at ``dpid``/``port`` (as build_fabric does)."""
    frame = b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) + struct.pack("!HHH", 0x8100, vlan, 0x0806) + bytes(46)
    fabric.packet_in(dpid, T_LEARN, port, frame)


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    cfg = tmp_path / "net.yaml"
    cfg.write_text(NET)
    model = load_model(cfg)
    fabric = FakeFabric.from_model(model)
    ports = port_numbers(model)
    for vm in model.vms:
        if vm.name != "guest":  # guest has not spoken yet
            learn(
                fabric,
                *ports[(vm.switch, vm.port)],
                model.network_by_name[vm.network].vlan,
                vm.mac or "02:00:00:00:00:99",
            )
    shim = FakeShim(fabric, str(cfg))
    monkeypatch.delenv("VMN_API_TOKEN", raising=False)
    srv = server.start(ControllerBridge(shim), "127.0.0.1", 0)
    assert srv.wait_started(30)
    yield Api(f"http://127.0.0.1:{srv.port}", shim, cfg)
    srv.stop()


def test_topology_lists_switches_links_vms_and_locations(api: Api) -> None:
    status, topo = api.call("GET", "/api/v1/topology")
    assert status == 200
    assert topo["switches"][0]["flows"] == len(api.shim.core.flows.rules(1))
    assert [(s["name"], s["dpid"], s["connected"], s["ready"]) for s in topo["switches"]] == [
        ("s1", "0000000000000001", True, True),
        ("s2", "0000000000000002", True, True),
    ]
    assert topo["links"] == [
        {
            "id": "s1:10-s2:10",
            "a": {"switch": "s1", "port": 10},
            "b": {"switch": "s2", "port": 10},
            "up": True,
            "declared": True,
        }
    ]
    vms = {v["name"]: v for v in topo["vms"]}
    assert vms["db"]["location"] == {"switch": "s2", "port": 1000, "mac": "02:00:00:00:02:03"}
    assert vms["db"]["network"] == "red" and vms["db"]["ip"] == "10.70.0.3/24"
    assert vms["guest"]["location"] is None
    assert [lb["name"] for lb in topo["load_balancers"]] == ["web"]


def test_hosts_lb_and_flows(api: Api) -> None:
    status, hosts = api.call("GET", "/api/v1/hosts")
    assert status == 200
    assert {(h["vm"], h["switch"], h["network"]) for h in hosts["hosts"]} == {
        ("client", "s1", "red"),
        ("db", "s2", "red"),
        ("web1", "s2", "red"),
    }
    status, lb = api.call("GET", "/api/v1/lb")
    assert status == 200
    backends = lb["load_balancers"][0]["backends"]
    assert [(b["vm"], b["up"], b["location"]["switch"]) for b in backends] == [("db", True, "s2"), ("web1", True, "s2")]
    status, flows = api.call("GET", "/api/v1/flows?switch=s1")
    assert status == 200 and [s["name"] for s in flows["switches"]] == ["s1"]
    wanted = api.shim.core.flows.rules(1)
    assert len(flows["switches"][0]["flows"]) == len(wanted)
    assert {int(line.split(",")[0].split("=")[1], 16) for line in flows["switches"][0]["flows"]} == {
        r.cookie for r in wanted
    }
    status, text = api.call("GET", "/api/v1/flows?switch=0x2&format=text")
    assert status == 200 and text.startswith("# s2 dpid=0000000000000002 flows=")
    status, err = api.call("GET", "/api/v1/flows?switch=s9")
    assert status == 404 and err["detail"] == "no connected switch 's9' (connected: s1, s2)"


def test_trace_uses_live_state(api: Api) -> None:
    body = json.dumps({"from": "client", "to": "10.70.0.3", "protocol": "tcp", "port": 5432}).encode()
    status, out = api.call("POST", "/api/v1/trace", body, {"Content-Type": "application/json"})
    assert status == 200, out
    assert out["verdict"] == "allow" and out["connects"] is True
    assert out["forward"]["path"] == ["s1:1", "s2:10", "out s2:vnet3 (db)"]
    body = json.dumps({"from": "client", "to": "10.70.0.100", "protocol": "tcp", "port": 80}).encode()
    status, out = api.call("POST", "/api/v1/trace", body, {"Content-Type": "application/json"})
    assert status == 200 and out["verdict"] == "allow", out  # the VIP, through the live select group
    assert out["forward"]["path"][-1] in ("out s2:vnet3 (db)", "out s2:5 (web1)")
    body = json.dumps({"from": "guest", "to": "10.70.0.1"}).encode()
    status, out = api.call("POST", "/api/v1/trace", body, {"Content-Type": "application/json"})
    assert status == 200 and out["verdict"] == "deny"
    status, out = api.call(
        "POST", "/api/v1/trace", b'{"from": "nobody", "to": "10.70.0.1"}', {"Content-Type": "application/json"}
    )
    assert status == 422 and out["detail"] == "unknown vm or uplink 'nobody'"
    status, out = api.call(
        "POST",
        "/api/v1/trace",
        b'{"from": "client", "to": "10.70.0.1", "port": 70000}',
        {"Content-Type": "application/json"},
    )
    assert status == 422 and out["errors"] == ["body.port: Input should be less than or equal to 65535"]


def test_plan_shows_one_rule_delete_and_add(api: Api) -> None:
    status, out = api.call("POST", "/api/v1/plan", NET.encode())
    assert status == 200
    assert all(not s["added"] and not s["removed"] for s in out["switches"]), out
    status, out = api.call("POST", "/api/v1/plan", NET.replace("tcp_dst: 80}", "tcp_dst: 8080}").encode())
    assert status == 200
    by = {s["name"]: s for s in out["switches"]}
    assert len(by["s1"]["removed"]) == 1 and "tcp_dst=80 " in by["s1"]["removed"][0]
    assert len(by["s1"]["added"]) == 1 and "tcp_dst=8080 " in by["s1"]["added"][0]
    assert not by["s2"]["added"] and not by["s2"]["removed"]
    status, out = api.call("POST", "/api/v1/plan", NET.replace("network: blue", "network: pink").encode())
    assert status == 422 and out["errors"] == ["vms.guest.network: unknown network 'pink'"]


def test_config_push_needs_a_token(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    new = NET.replace("guest: {switch: s2, port: 4, network: blue", "guest: {switch: s2, port: 4, network: red")
    status, out = api.call("PUT", "/api/v1/config", new.encode())
    assert status == 403 and "mutating calls are disabled" in out["detail"]
    monkeypatch.setenv("VMN_API_TOKEN", "s3cret")
    status, out = api.call("PUT", "/api/v1/config", new.encode())
    assert status == 401 and out["detail"] == "this call needs 'Authorization: Bearer <token>'"
    status, out = api.call("PUT", "/api/v1/config", new.encode(), {"Authorization": "Bearer nope"})
    assert status == 401 and out["detail"] == "wrong API token"
    assert api.cfg.read_text() == NET and api.shim.reloads == 0
    status, out = api.call("PUT", "/api/v1/config", new.encode(), {"Authorization": "Bearer s3cret"})
    assert status == 200 and out["applied"] is True
    assert api.cfg.read_text() == new and api.shim.reloads == 1
    assert api.shim.core.model.vm_by_name["guest"].network == "red"


def test_token_file_relative_to_the_network_file(api: Api) -> None:
    (api.cfg.parent / "token").write_text("from-file\n")
    with_file = "controller: {api_token_file: token}\n" + NET
    api.shim.fabric.reload(load_model_text(with_file))
    status, _ = api.call("PUT", "/api/v1/config", with_file.encode(), {"Authorization": "Bearer from-file"})
    assert status == 200


def load_model_text(text: str) -> Any:
    from controller.config import loads_model

    return loads_model(text)


def test_invalid_push_changes_nothing_and_names_every_error(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMN_API_TOKEN", "t")
    auth = {"Authorization": "Bearer t"}
    bad = NET.replace("network: blue", "network: pink").replace("vlan: 200", "vlan: 5000")
    status, out = api.call("PUT", "/api/v1/config", bad.encode(), auth)
    assert status == 422
    assert out["errors"] == [
        "networks.blue.vlan: must be between 1 and 4094, got 5000",
        "vms.guest.network: unknown network 'pink'",
    ]
    status, out = api.call("PUT", "/api/v1/config", b"switches: [", auth)
    assert status == 422 and out["errors"][0].startswith("net.yaml:2:1: invalid YAML")
    status, out = api.call("PUT", "/api/v1/config", b"\xff\xfe", auth)
    assert status == 422 and "not UTF-8" in out["errors"][0]
    assert api.cfg.read_text() == NET and api.shim.reloads == 0


def test_page_and_openapi(api: Api) -> None:
    status, page = api.call("GET", "/")
    assert status == 200 and "cytoscape.min.js" in page
    status, js = api.call("GET", "/static/vendor/cytoscape.min.js")
    assert status == 200 and len(js) > 100_000
    status, spec = api.call("GET", "/api/v1/openapi.json")
    assert status == 200 and "/api/v1/trace" in spec["paths"]
    status, out = api.call("GET", "/api/v1/nothing")
    assert status == 404 and out["detail"] == "Not Found"


def test_vmn_plan_prints_the_diff_per_switch(api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from controller.cli import main

    new = tmp_path / "new.yaml"
    new.write_text(NET.replace("tcp_dst: 80}", "tcp_dst: 8080}"))
    assert main(["plan", str(new), "--url", api.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "s1 (0000000000000001): 1 removed, 1 added"
    assert lines[1].startswith("- cookie=") and "tcp_dst=80 " in lines[1]
    assert lines[2].startswith("+ cookie=") and "tcp_dst=8080 " in lines[2]
    assert lines[3:] == ["s2 (0000000000000002): no change"]
    new.write_text(NET.replace("network: blue", "network: pink"))
    assert main(["plan", str(new), "--url", api.url]) == 1
    assert capsys.readouterr().err == "vms.guest.network: unknown network 'pink'\n"
    assert main(["plan", str(new), "--url", "http://127.0.0.1:1"]) == 2
    assert "cannot reach the controller's API at http://127.0.0.1:1" in capsys.readouterr().err


def test_api_keys_of_the_controller_section() -> None:
    from controller.config import ConfigError, loads_model

    settings = loads_model("switches: {s1: {dpid: 1}}").controller
    assert (settings.api_port, settings.api_token_file) == (9304, None)
    settings = loads_model("controller: {api_port: 0, api_token_file: tok}\nswitches: {s1: {dpid: 1}}").controller
    assert (settings.api_port, settings.api_token_file) == (0, "tok")
    with pytest.raises(ConfigError) as err:
        loads_model('controller: {api_port: 70000, api_token_file: ""}\nswitches: {s1: {dpid: 1}}')
    assert err.value.errors == (
        "controller.api_port: must be between 0 and 65535, got 70000",
        "controller.api_token_file: must not be empty",
    )


def test_a_slow_app_thread_is_a_503_not_a_hang(api: Api) -> None:
    srv = server.start(ControllerBridge(api.shim, timeout=0.2), "127.0.0.1", 0)
    assert srv.wait_started(30)
    api.shim.lock.acquire()  # the app thread is busy
    try:
        status, out = Api(f"http://127.0.0.1:{srv.port}", api.shim, api.cfg).call("GET", "/api/v1/topology")
        assert status == 503 and out["detail"] == "the controller did not answer in time"
    finally:
        api.shim.lock.release()
        srv.stop()
