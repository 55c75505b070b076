"""``osken-manager``: run os-ken apps (os-ken 4.x no longer ships this command).

Usage::

    osken-manager [--ofp-tcp-listen-port 6653] [--ofp-listen-host ADDR] [--verbose]
                  [--ctl-privkey KEY --ctl-cert CERT --ca-certs CA] [--config-file F]
                  controller.app [more.apps ...]

SIGTERM and SIGINT stop the apps and exit 0; SIGHUP is delivered to every
app that defines ``on_sighup()`` (VMN reloads its network file).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

from os_ken import cfg, log

log.early_init_log(logging.INFO)

from os_ken.base.app_manager import AppManager  # noqa: E402  (after early log init)
from os_ken.controller import controller  # noqa: E402,F401  (registers --ofp-* and TLS options)

from controller import rx  # noqa: E402  (after early log init, as os-ken's own imports)

CONF = cfg.CONF
CONF.register_cli_opts(
    [
        cfg.ListOpt("app-lists", default=[], help="application module names to run"),
        cfg.MultiStrOpt("app", positional=True, default=[], help="application module names to run"),
        cfg.StrOpt("pid-file", default=None, help="pid file name"),
    ]
)

LOG = logging.getLogger("vmn.launcher")


def main(argv: list[str] | None = None) -> int:
    """Parse os-ken options, run the named apps until a stop signal, return the exit code."""
    CONF(
        args=sys.argv[1:] if argv is None else argv,
        project="os_ken",
        version="osken-manager (vmn) 0.1",
        default_config_files=[],
    )
    log.init_log()
    apps = CONF.app_lists + CONF.app
    if not apps:
        print("osken-manager: name at least one app module, e.g. controller.app", file=sys.stderr)
        return 2
    if CONF.pid_file:
        with open(CONF.pid_file, "w") as f:
            f.write(str(os.getpid()))
    rx.install()  # chunked receive loop that sheds repeated packet-ins (controller.rx)
    manager = AppManager.get_instance()
    manager.load_apps(apps)
    services = manager.instantiate_apps(**manager.create_contexts())
    stop = threading.Event()
    _install_signals(manager, stop)
    try:
        while not stop.is_set() and any(t.is_alive() for t in services):
            stop.wait(0.5)
    finally:
        LOG.info("stopping")
        try:
            manager.close()
        finally:
            logging.shutdown()
            os._exit(0)  # os-ken's datapath threads are not daemons
    return 0


def _install_signals(manager: AppManager, stop: threading.Event) -> None:
    def on_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        for app in list(manager.applications.values()):
            hook = getattr(app, "on_sighup", None)
            if callable(hook):
                hook()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)


if __name__ == "__main__":
    sys.exit(main())
