"""The REST API, ``vmn plan`` and the web view of a real controller on real OVS.

One lab of the four-VM network below (two bridges, one trunk, four VMs in
two networks, plus an ACL on tenant-a; the default topology before it grew
routers) and one controller serve every check of
this module, in order: listing, flows against the switch, live trace,
``vmn plan``, refused and invalid pushes (pings continue), a valid push
that moves a VM to another network, a fuzz of malformed requests, and the
web page in headless Chromium while a link is cut.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.tools.lab import OFCTL, ControllerProcess, Lab, Wired, free_port, sh, wait_until, wire
from controller.tools.lab.controller_process import REPO_ROOT
from tests.conftest import _ovs_unavailable_reason

pytestmark = pytest.mark.ovs

TOKEN = "test-token-19"
ACL = """
acls:
  a-in:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow}
    - {match: {ip_proto: icmp}, action: allow}
"""
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
FOUR_VMS = """
switches:
  s1: {dpid: 0x1}
  s2: {dpid: 0x2}
links:
  - [s1:10, s2:10]
networks:
  tenant-a: {vlan: 100}
  tenant-b: {vlan: 200}
vms:
  a1: {switch: s1, port: 1, network: tenant-a, ip: 10.0.0.1/24, mac: "02:00:00:00:01:01"}
  b1: {switch: s1, port: 2, network: tenant-b, ip: 10.0.0.2/24, mac: "02:00:00:00:01:02"}
  a2: {switch: s2, port: 1, network: tenant-a, ip: 10.0.0.3/24, mac: "02:00:00:00:02:01"}
  b2: {switch: s2, port: 2, network: tenant-b, ip: 10.0.0.4/24, mac: "02:00:00:00:02:02"}
"""
"""Two tenants sharing one subnet, one VM of each on each bridge (what the checks below assume)."""


def network_file(api_port: int, acl_port: int = 80, b1_network: str = "tenant-b") -> str:
    """:data:`FOUR_VMS` with an ACL on tenant-a, the API on ``api_port`` and a token file."""
    net: dict[str, Any] = yaml.safe_load(FOUR_VMS)
    net["controller"] = {"api_port": api_port, "metrics_port": 0, "api_token_file": "token"}
    net["networks"]["tenant-a"]["acl_in"] = ["a-in"]
    net["vms"]["b1"]["network"] = b1_network
    text = yaml.safe_dump(net, sort_keys=False) + ACL
    return text.replace("tcp_dst: 80}", f"tcp_dst: {acl_port}}}")


@dataclass
class Site:
    lab: Lab
    wired: Wired
    ctl: ControllerProcess
    cfg: Path
    url: str

    def call(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                raw, status, kind = resp.read(), resp.status, resp.headers.get("content-type", "")
        except urllib.error.HTTPError as err:
            raw, status, kind = err.read(), err.code, err.headers.get("content-type", "")
        return status, json.loads(raw) if "json" in kind else raw.decode(errors="replace")

    def ping(self, a: str, b: str, timeout: float = 1) -> bool:
        target = self.wired.hosts[b].ip
        assert target is not None
        return self.wired.hosts[a].ping(target, timeout=timeout)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    reason = _ovs_unavailable_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI: real-OVS test cannot run: {reason}")
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("api")
    api_port = free_port()
    cfg = tmp / "net.yaml"
    cfg.write_text(network_file(api_port))
    (tmp / "token").write_text(TOKEN + "\n")
    net = yaml.safe_load(FOUR_VMS)
    with Lab() as lab, ControllerProcess(cfg) as ctl:
        wired = wire(lab, net, ctl.port)
        s = Site(lab, wired, ctl, cfg, f"http://127.0.0.1:{api_port}")
        wait_until(lambda: s.ping("a1", "a2"), 30, message="a1 -> a2")
        wait_until(lambda: s.ping("b1", "b2"), 10, message="b1 -> b2")
        try:
            yield s
        finally:
            print(ctl.log_text()[-4000:])


def _vms(site: Site) -> dict[str, Any]:
    status, topo = site.call("GET", "/api/v1/topology")
    assert status == 200, topo
    return {vm["name"]: vm for vm in topo["vms"]}


def test_api_lists_switches_the_link_and_vms_with_networks(site: Site) -> None:
    status, topo = site.call("GET", "/api/v1/topology")
    assert status == 200
    assert [(s["name"], s["connected"], s["ready"], s["role"]) for s in topo["switches"]] == [
        ("s1", True, True, "equal"),
        ("s2", True, True, "equal"),
    ]
    assert [(link["id"], link["up"]) for link in topo["links"]] == [("s1:10-s2:10", True)]
    assert {(vm["name"], vm["network"], vm["switch"]) for vm in topo["vms"]} == {
        ("a1", "tenant-a", "s1"),
        ("b1", "tenant-b", "s1"),
        ("a2", "tenant-a", "s2"),
        ("b2", "tenant-b", "s2"),
    }

    def located() -> dict[str, Any] | None:
        vms = _vms(site)
        return vms if all(vm["location"] for vm in vms.values()) else None

    vms = wait_until(located, 5, message="every VM located")
    assert vms["a2"]["location"] == {"switch": "s2", "port": 1, "mac": "02:00:00:00:02:01"}


def test_flows_are_what_the_switch_holds(site: Site) -> None:
    bridge = site.wired.bridges["s1"]

    def dumped() -> set[int]:
        out = sh([*OFCTL, "dump-flows", bridge]).stdout
        return {int(c, 16) for c in re.findall(r"cookie=0x([0-9a-f]+)", out)}

    status, flows = site.call("GET", "/api/v1/flows?switch=s1")
    assert status == 200
    wanted = {int(line.split(",")[0].removeprefix("cookie="), 16) for line in flows["switches"][0]["flows"]}
    assert wanted == dumped()


def _trace(site: Site, src: str, dst: str, **extra: Any) -> dict[str, Any]:
    body = json.dumps({"from": src, "to": dst, **extra}).encode()
    status, out = site.call("POST", "/api/v1/trace", body, {"Content-Type": "application/json"})
    assert status == 200, out
    result: dict[str, Any] = out
    return result


def test_live_trace_allows_same_network_and_denies_isolated(site: Site) -> None:
    same = _trace(site, "a1", "10.0.0.3", protocol="icmp")
    assert same["verdict"] == "allow" and same["connects"], same
    assert same["forward"]["path"] == ["s1:1", "s2:10", "out s2:1 (a2)"]
    assert "network acl a-in rule 1 (allow)" in same["forward"]["acl"]
    isolated = _trace(site, "b1", "10.0.0.3", protocol="icmp")
    assert isolated["verdict"] == "deny" and not isolated["connects"]
    assert _trace(site, "a1", "10.0.0.3", protocol="tcp", port=22)["verdict"] == "deny"


def test_vmn_plan_shows_one_acl_rule_delete_and_add_per_switch(site: Site, tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(network_file(0, acl_port=8080))
    proc = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "vmn"), "plan", str(new), "--url", site.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line for line in lines if not line.startswith(("-", "+"))] == [
        "s1 (0000000000000001): 1 removed, 1 added",
        "s2 (0000000000000002): 1 removed, 1 added",
    ]
    assert len([line for line in lines if line.startswith("- ") and "tcp_dst=80 " in line]) == 2
    assert len([line for line in lines if line.startswith("+ ") and "tcp_dst=8080 " in line]) == 2


def test_push_without_token_is_refused(site: Site) -> None:
    before = site.cfg.read_text()
    status, out = site.call("PUT", "/api/v1/config", network_file(0, b1_network="tenant-a").encode())
    assert status == 401 and out["detail"] == "this call needs 'Authorization: Bearer <token>'"
    assert site.cfg.read_text() == before


def _ping_run(site: Site, a: str, b: str, count: int) -> subprocess.Popen[str]:
    target = site.wired.hosts[b].ip
    assert target is not None
    return site.wired.hosts[a].popen(["ping", "-n", "-i", "0.05", "-c", str(count), "-W", "1", target])


def _lost(proc: subprocess.Popen[str]) -> int:
    out, _ = proc.communicate(timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    return int(m.group(1)) - int(m.group(2))


def test_invalid_push_returns_the_error_with_its_path_and_changes_nothing(site: Site) -> None:
    before, reloads = site.cfg.read_text(), site.ctl.log_text().count("reload")
    ping = _ping_run(site, "a1", "a2", 40)  # 2 s
    time.sleep(0.3)
    bad = network_file(0).replace("network: tenant-b", "network: tenant-c", 1)
    status, out = site.call("PUT", "/api/v1/config", bad.encode(), {"Authorization": f"Bearer {TOKEN}"})
    assert status == 422
    assert out["errors"] == ["vms.b1.network: unknown network 'tenant-c'"]
    assert _lost(ping) == 0
    assert site.cfg.read_text() == before
    assert site.ctl.log_text().count("reload") == reloads


def test_valid_push_moves_a_vm_to_another_network_within_a_second(site: Site) -> None:
    assert not site.ping("b1", "a1", timeout=0.5)
    moved = network_file(int(site.url.rsplit(":", 1)[1]), b1_network="tenant-a")
    started = time.monotonic()
    status, out = site.call("PUT", "/api/v1/config", moved.encode(), {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and out["applied"], out
    wait_until(lambda: site.ping("b1", "a1", timeout=0.2), 1.0, interval=0.02, message="b1 -> a1 within 1 s")
    in_force = time.monotonic() - started
    assert not site.ping("b1", "b2", timeout=0.5)
    assert yaml.safe_load(site.cfg.read_text())["vms"]["b1"]["network"] == "tenant-a"
    print(f"push -> b1 reaches a1 after {in_force:.3f}s (the PUT itself took {out['seconds']:.3f}s)")
    # put the file back for the checks that follow
    status, _ = site.call(
        "PUT",
        "/api/v1/config",
        network_file(int(site.url.rsplit(":", 1)[1])).encode(),
        {"Authorization": f"Bearer {TOKEN}"},
    )
    assert status == 200
    wait_until(lambda: site.ping("b1", "b2"), 5, message="b1 back in tenant-b")


# -- fuzz: malformed JSON, YAML and headers never crash the controller -----------------------------
ENDPOINTS = [
    ("GET", "/api/v1/topology"),
    ("GET", "/api/v1/hosts"),
    ("GET", "/api/v1/lb"),
    ("GET", "/api/v1/flows"),
    ("POST", "/api/v1/trace"),
    ("POST", "/api/v1/plan"),
    ("PUT", "/api/v1/config"),
    ("DELETE", "/api/v1/config"),
    ("GET", "/"),
]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_trace_like = st.fixed_dictionaries(
    {},
    optional={
        "from": st.sampled_from(["a1", "b1", "", "zz", "a1\x00"]) | st.text(max_size=10) | st.integers(),
        "to": st.sampled_from(["10.0.0.3", "::1", "10.0.0.256", "", "fe80::1%eth0"]) | st.text(max_size=10),
        "protocol": st.sampled_from(["tcp", "udp", "icmp", "sctp", ""]) | st.integers(),
        "port": st.integers(-(2**70), 2**70) | st.none() | st.text(max_size=4),
    },
)
_header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


def _mutated_file(data: st.DataObject) -> bytes:
    text = network_file(0)
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 40)))
    return (text[:start] + data.draw(st.text(max_size=20)) + text[end:]).encode("utf-8", "surrogatepass")


@given(data=st.data())
@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
def test_fuzzed_requests_get_4xx_never_a_crash(site: Site, data: st.DataObject) -> None:
    method, path = data.draw(st.sampled_from(ENDPOINTS))
    query = data.draw(
        st.sampled_from(["", "?switch=s1", "?switch=", "?switch=%ff%fe", "?format=xml", "?switch=0x1&format=text"])
    )
    kind = data.draw(st.sampled_from(["json", "trace", "bytes", "yaml", "file"]))
    if kind == "json":
        body = json.dumps(data.draw(_json)).encode()
    elif kind == "trace":
        body = json.dumps(data.draw(_trace_like)).encode()
    elif kind == "bytes":
        body = data.draw(st.binary(max_size=200))
    elif kind == "yaml":
        body = data.draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    else:
        body = _mutated_file(data)
    headers = {
        "Content-Type": data.draw(
            st.sampled_from(["application/json", "application/yaml", "text/plain", ""]) | _header_text
        )
    }
    auth = data.draw(
        st.sampled_from(["", "Bearer", "Bearer wrong", "Basic Zm9vOmJhcg==", f"bearer  {TOKEN}x"]) | _header_text
    )
    if kind != "file" and data.draw(st.booleans()):
        auth = f"Bearer {TOKEN}"  # reaches validation; such bodies are never a valid network file
    if auth:
        headers["Authorization"] = auth
    conn = http.client.HTTPConnection("127.0.0.1", int(site.url.rsplit(":", 1)[1]), timeout=30)
    try:
        conn.request(method, path + query, body=body if method != "GET" else None, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
    finally:
        conn.close()
    assert resp.status < 500, (method, path, resp.status, text[:300])
    assert "Traceback" not in text


def test_garbage_on_the_socket_and_the_controller_still_forwards(site: Site) -> None:
    port = int(site.url.rsplit(":", 1)[1])
    for garbage in (
        b"\x00\xff" * 100 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"PUT /api/v1/config HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nx",
        b"GET " + b"a" * 70000,
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(4096)
    assert site.ctl.alive()
    assert site.call("GET", "/api/v1/topology")[0] == 200
    assert site.cfg.read_text() == network_file(port)
    wait_until(lambda: site.ping("a1", "a2"), 5, message="a1 -> a2 after the fuzz")
    wait_until(lambda: site.ping("b1", "b2"), 5, message="b1 -> b2 after the fuzz")


# -- the web page in headless Chromium ----------------------------------------------------------------
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail("chromium and chromium-driver are missing (scripts/setup.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _dom(driver: Any, selector: str, attr: str = "data-state") -> dict[str, str]:
    """Each element matching ``selector`` (a side-panel list item): its key attribute -> ``attr``."""
    script = (
        "return Array.from(document.querySelectorAll(arguments[0])).map("
        "e => [e.getAttribute(arguments[1]), e.getAttribute(arguments[2])]);"
    )
    key = {"#switches li": "data-switch", "#links li": "data-link", "#vms li": "data-vm"}[selector]
    return dict(driver.execute_script(script, selector, key, attr))


def test_web_page_shows_every_switch_and_vm_and_a_cut_link_within_2s(site: Site, browser: Any) -> None:
    browser.get(site.url + "/")
    wait_until(lambda: len(_dom(browser, "#vms li")) == 4, 15, message="the page lists the VMs")
    assert _dom(browser, "#switches li") == {"s1": "connected", "s2": "connected"}
    assert _dom(browser, "#vms li", "data-network") == {
        "a1": "tenant-a",
        "a2": "tenant-a",
        "b1": "tenant-b",
        "b2": "tenant-b",
    }
    assert _dom(browser, "#links li") == {"s1:10-s2:10": "up"}
    graph = browser.execute_script(
        "const cy = window.vmnGraph; return [cy.nodes('.switch').map(n => n.id()).sort(),"
        " cy.nodes('.vm').map(n => n.id()).sort(), cy.edges('.link.up').length,"
        " cy.nodes('.vm').map(n => n.data('color'))];"
    )
    assert graph[0] == ["sw:s1", "sw:s2"] and graph[1] == ["vm:a1", "vm:a2", "vm:b1", "vm:b2"]
    assert graph[2] == 1 and len(set(graph[3])) == 2  # one colour per network
    link = site.wired.links[0]
    cut = time.monotonic()
    site.lab.set_port_down(link.iface_a)
    try:
        wait_until(
            lambda: _dom(browser, "#links li") == {"s1:10-s2:10": "down"},
            2.0,
            interval=0.02,
            message="the page shows the link down within 2 s",
        )
        shown = time.monotonic() - cut
        assert browser.execute_script("return window.vmnGraph.edges('.link.down').length;") == 1
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "webview-link-down.png"))
        print(f"link cut -> page shows it down after {shown:.3f}s")
    finally:
        site.lab.set_port_up(link.iface_a)
    wait_until(lambda: _dom(browser, "#links li") == {"s1:10-s2:10": "up"}, 10, message="link back up on the page")
    browser.save_screenshot(str(ARTIFACTS / "webview.png"))


def test_web_page_trace_form(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(site.url + "/")
    wait_until(lambda: len(_dom(browser, "#vms li")) == 4, 15, message="the page lists the VMs")
    Select(browser.find_element(By.ID, "trace-from")).select_by_value("a1")
    browser.find_element(By.ID, "trace-to").send_keys("10.0.0.3")
    browser.find_element(By.ID, "trace-go").click()
    result = browser.find_element(By.ID, "trace-result")
    wait_until(lambda: result.get_attribute("data-verdict"), 10, message="trace verdict shown")
    assert result.get_attribute("data-verdict") == "allow"
    assert result.text.startswith("verdict: allow (reply: allow)")
