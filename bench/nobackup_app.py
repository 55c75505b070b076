"""The controller without backup paths: the failover benchmark's baseline.

``osken-manager bench.nobackup_app`` runs :class:`controller.app.VmnController`
with no backup chosen anywhere (:meth:`controller.fabric.protection.DestinationTree.choose`
answers None), so no fast-failover group is installed and every switch
forwards on its primary port only: a cut link is rerouted by the controller
alone, on the port-status message, as before backups existed. Benchmark use
only: importing this module changes that method for the whole process.
"""

from __future__ import annotations

from controller.app import VmnController
from controller.fabric import protection


def _no_backup(self: protection.DestinationTree, node: int, prefer: frozenset[int]) -> protection.Option | None:
    return None


protection.DestinationTree.choose = _no_backup  # type: ignore[method-assign]


class NoBackupController(VmnController):
    """The VMN controller, unchanged but for the missing backups."""
