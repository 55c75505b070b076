"""The OpenFlow channel over TLS: a switch with a certificate from our CA is admitted, others not.

The controller runs with ``--ctl-privkey/--ctl-cert`` (its identity),
``--ca-certs`` (the CA whose certificates it accepts from switches) and
``--ofp-ssl-listen-port``; with those options os-ken listens on TLS only.
The bridges use an ``ssl:127.0.0.1:PORT`` controller target.

OVS has no per-bridge TLS settings: the key, certificate and CA certificate
a switch presents and trusts live in the one ``SSL`` record of the
``Open_vSwitch`` table (``ovs-vsctl set-ssl``), shared by every bridge of
the OVS instance and by ovsdb-server's own ``ssl:`` remotes. The
:func:`ovs_ssl` fixture therefore (1) takes an exclusive lock file, so two
test processes never configure TLS at once, (2) remembers the record (or
its absence), edits the existing record in place rather than replacing it,
so columns this test does not set (``external_ids``) survive, and (3)
restores it, or deletes the one it created, at teardown, also when the test
failed. Bridges of other tests use ``tcp:`` targets and are not affected by
the record while it is set. A test process killed with SIGKILL cannot
restore it; ``ovs-vsctl get-ssl`` shows what is left.

The os-ken native hub swallows the exception of a failed handshake (its
``TaskExit`` is ``Exception``), so the controller logs nothing about a
refused switch; the evidence of a refusal comes from OVS instead: the
controller record's ``status:last_error`` and ovs-vswitchd's log.
"""

from __future__ import annotations

import fcntl
import json
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.tools.lab import VSCTL, ControllerProcess, Lab, dump_flows, free_port, sh, wait_until

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]
SslSetter = Callable[[Path, Path, Path], None]

SSL_LOCK = Path(tempfile.gettempdir()) / "vmn-ovs-ssl.lock"
SSL_COLUMNS = ("private_key", "certificate", "ca_cert", "bootstrap_ca_cert")
VSWITCHD_PIDFILE = Path("/var/run/openvswitch/ovs-vswitchd.pid")
REFUSE_WINDOW = 5.0  # seconds a refused switch is watched for not getting in
LEAF_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
)

NETWORK = """
controller: {{metrics_port: 0}}
switches: {{s1: {{dpid: {dpid:#x}}}}}
networks: {{red: {{vlan: 100}}}}
vms:
  a: {{switch: s1, port: 1, network: red}}
  b: {{switch: s1, port: 2, network: red}}
"""


# ------------------------------------------------------------------ PKI --


@dataclass(frozen=True)
class KeyPair:
    key: Path
    cert: Path


@dataclass(frozen=True)
class Pki:
    """Our CA, the controller's and a switch's certificates from it, and a switch's from another CA."""

    ca: KeyPair
    controller: KeyPair
    switch: KeyPair
    rogue_switch: KeyPair


def _openssl(*args: str) -> None:
    sh(["openssl", *args])


def _new_key_args(key: Path) -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key)]


def make_ca(directory: Path, name: str) -> KeyPair:
    """A self-signed CA certificate, valid for two days."""
    pair = KeyPair(directory / f"{name}.key", directory / f"{name}.pem")
    _openssl(
        "req",
        "-x509",
        "-new",
        *_new_key_args(pair.key),
        "-days",
        "2",
        "-subj",
        f"/CN=VMN test {name}",
        "-out",
        str(pair.cert),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    return pair


def make_leaf(directory: Path, name: str, ca: KeyPair) -> KeyPair:
    """A key and an X.509 v3 certificate for ``name``, signed by ``ca``."""
    pair = KeyPair(directory / f"{name}.key", directory / f"{name}.pem")
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    ext.write_text(LEAF_EXTENSIONS)
    _openssl("req", "-new", *_new_key_args(pair.key), "-subj", f"/CN={name}", "-out", str(csr))
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca.cert),
        "-CAkey",
        str(ca.key),
        "-set_serial",
        str(secrets.randbits(63)),
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(pair.cert),
    )
    return pair


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    ca, other_ca = make_ca(directory, "ca"), make_ca(directory, "other-ca")
    return Pki(
        ca,
        make_leaf(directory, "controller", ca),
        make_leaf(directory, "switch", ca),
        make_leaf(directory, "rogue-switch", other_ca),
    )


# ----------------------------------------------------- OVS's SSL record --


def _ssl_record() -> str | None:
    """UUID of the Open_vSwitch table's SSL record, or None."""
    out = sh([*VSCTL, "get", "Open_vSwitch", ".", "ssl"]).stdout.strip()
    return None if out in ("", "[]") else out


@pytest.fixture
def ovs_ssl(require_ovs: None) -> Iterator[SslSetter]:
    """``ovs_ssl(key, cert, ca_cert)`` sets the switch-side TLS files; restored at teardown.

    Holds an exclusive lock on :data:`SSL_LOCK` for the whole test (see the
    module docstring for why the record is global).
    """
    with open(SSL_LOCK, "a") as lock:
        deadline = time.monotonic() + 300
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test holds {SSL_LOCK} for more than 300 s")
                time.sleep(0.2)
        try:
            uuid = _ssl_record()
            saved = {c: sh([*VSCTL, "get", "SSL", uuid, c]).stdout.strip() for c in SSL_COLUMNS} if uuid else {}

            def set_ssl(key: Path, cert: Path, ca_cert: Path) -> None:
                if uuid is None:
                    sh([*VSCTL, "set-ssl", str(key), str(cert), str(ca_cert)])
                else:
                    sh(
                        [
                            *VSCTL,
                            "set",
                            "SSL",
                            uuid,
                            f'private_key="{key}"',
                            f'certificate="{cert}"',
                            f'ca_cert="{ca_cert}"',
                            "bootstrap_ca_cert=false",
                        ]
                    )

            yield set_ssl
        finally:
            if uuid is None:
                sh([*VSCTL, "del-ssl"])
            else:
                sh([*VSCTL, "set", "SSL", uuid, *(f"{c}={v}" for c, v in saved.items())])
            fcntl.flock(lock, fcntl.LOCK_UN)


# -------------------------------------------------------- switch state --


def ssl_target(port: int) -> str:
    return f"ssl:127.0.0.1:{port}"


def point_at(bridge: str, port: int) -> None:
    """Give ``bridge`` the TLS controller target (1 s reconnect backoff, as the lab does)."""
    sh([*VSCTL, "set-controller", bridge, ssl_target(port), "--", "set", "controller", bridge, "max_backoff=1000"])


def controller_state(bridge: str, port: int) -> dict[str, Any]:
    """``is_connected`` and ``status`` of ``bridge``'s controller record for ``ssl_target(port)``."""
    uuids = sh([*VSCTL, "get", "bridge", bridge, "controller"]).stdout.strip("[] \n")
    if not uuids:
        return {}
    out = sh(
        [*VSCTL, "--format=json", "--columns=target,is_connected,status", "list", "controller", *uuids.split(", ")]
    ).stdout
    for target, connected, (_, status) in json.loads(out)["data"]:
        if target == ssl_target(port):
            return {"is_connected": connected, "status": dict(status)}
    return {}


def tls_connected(bridge: str, port: int) -> bool:
    return bool(controller_state(bridge, port).get("is_connected"))


def vswitchd_log() -> Path | None:
    """ovs-vswitchd's log file, from its command line (None if it logs nowhere we can read)."""
    try:
        argv = Path(f"/proc/{VSWITCHD_PIDFILE.read_text().strip()}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    for arg in argv:
        if arg.startswith(b"--log-file="):
            return Path(arg.split(b"=", 1)[1].decode())
        if arg == b"--log-file":
            return Path("/var/log/openvswitch/ovs-vswitchd.log")
    return None


def tls_controller(factory: Factory, config: Path, pki: Pki) -> ControllerProcess:
    """A controller that listens on TLS only and accepts switch certificates from ``pki.ca``."""
    port = free_port()
    return factory(
        config,
        port=port,
        args=[
            "--ofp-listen-host",
            "127.0.0.1",
            "--ofp-ssl-listen-port",
            str(port),
            "--ctl-privkey",
            str(pki.controller.key),
            "--ctl-cert",
            str(pki.controller.cert),
            "--ca-certs",
            str(pki.ca.cert),
        ],
    )


def write_network(tmp_path: Path, dpid: int) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(NETWORK.format(dpid=dpid))
    return path


# ----------------------------------------------------------------- tests --


def test_switch_with_a_certificate_from_our_ca_is_admitted(
    ovs_ssl: SslSetter, lab: Lab, controller_factory: Factory, tmp_path: Path, pki: Pki
) -> None:
    dpid = 0x7C1
    ctl = tls_controller(controller_factory, write_network(tmp_path, dpid), pki)
    ovs_ssl(pki.switch.key, pki.switch.cert, pki.ca.cert)
    br = lab.add_bridge("b1", dpid, controller_port=None)
    a = lab.add_host("a", br, 1, ip="10.82.0.1")
    b = lab.add_host("b", br, 2, ip="10.82.0.2")
    point_at(br, ctl.port)
    ctl.wait_for_log(f"switch {dpid:016x} connected", 20)
    wait_until(lambda: tls_connected(br, ctl.port), 20, message=f"{br} connected over TLS")
    wait_until(lambda: a.ping(b), 15, message="a -> b through flows the controller installed over TLS")
    assert any("CONTROLLER" in line for line in dump_flows(br)), dump_flows(br)


def test_switch_with_a_certificate_from_another_ca_is_refused(
    ovs_ssl: SslSetter, lab: Lab, controller_factory: Factory, tmp_path: Path, pki: Pki
) -> None:
    dpid = 0x7C2
    connected_line = f"switch {dpid:016x} connected"
    ctl = tls_controller(controller_factory, write_network(tmp_path, dpid), pki)
    # The switch trusts our CA, so the only thing wrong is its own certificate.
    ovs_ssl(pki.rogue_switch.key, pki.rogue_switch.cert, pki.ca.cert)
    log = vswitchd_log()
    log_start = log.stat().st_size if log and log.exists() else 0
    br = lab.add_bridge("b1", dpid, controller_port=None)
    point_at(br, ctl.port)

    deadline = time.monotonic() + REFUSE_WINDOW
    while time.monotonic() < deadline:
        assert connected_line not in ctl.log_text(), "the controller admitted a switch from another CA"
        assert not tls_connected(br, ctl.port), "OVS reports the refused switch as connected"
        time.sleep(0.2)
    assert ctl.alive() and ctl.listening()
    assert not dump_flows(br), "no flow may reach a refused switch"

    # OVS saw its TLS sessions torn down by the controller (not refused at TCP level).
    error = wait_until(
        lambda: controller_state(br, ctl.port).get("status", {}).get("last_error"),
        15,
        message=f"{br}: a last_error in the controller status",
    )
    assert error != "Connection refused", error
    if log is not None and log.exists():
        with open(log, errors="replace") as f:
            f.seek(log_start)
            new_lines = f.read().splitlines()
        dropped = re.compile(rf"{re.escape(br)}<->{re.escape(ssl_target(ctl.port))}: connection (dropped|failed)")
        assert any(dropped.search(line) for line in new_lines), "\n".join(
            l for l in new_lines if br in l or "stream_ssl" in l
        )

    # Same switch, same controller, a certificate from our CA: now it gets in.
    ovs_ssl(pki.switch.key, pki.switch.cert, pki.ca.cert)
    ctl.wait_for_log(connected_line, 30)
    wait_until(lambda: tls_connected(br, ctl.port), 20, message=f"{br} connected once its cert is ours")
