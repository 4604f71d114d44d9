"""Several worker processes sharing one listening socket (`server.workers`).

The `nekzus` process becomes a small supervisor (`supervisor.py`): it prepares TLS, binds the socket
and maps the shared memory (`shared.py`) once, then forks the workers, restarts one that dies and
forwards stop signals. Each worker builds the whole app and serves on the inherited socket. Worker 0 is
the leader: it alone runs the background work named in `LEADER_ONLY`; the others only serve requests.
Events are relayed between workers through the supervisor (`relay.py`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket

    from nekzus.workers.shared import SharedState

# Start-up hooks (names given to `services.on_startup`) that run in the leader only: background loops
# and watchers that must exist once per instance, not once per worker.
LEADER_ONLY = frozenset(
    {
        "discovery",  # Docker / Kubernetes / mDNS watchers (they write the catalog)
        "catalog-health",  # the service health checker
        "config_reload",  # the config file watcher and SIGHUP (followers follow the leader's reload)
        "notifications",  # the retry loop of queued notifications
        "script-schedules",  # the cron scheduler of scripts and workflows
        "backup-scheduler",
        "certificate-renewal",
        "federation",  # gossip, peer sync and its mDNS
    }
)
# Hooks that repair what a crash left behind: they run once per instance, in the first leader only
# (a restarted worker must not fail the jobs other workers are running).
FIRST_START_ONLY = frozenset({"jobs", "scripts", "toolbox-recovery"})


def default_count(configured: int) -> int:
    """`server.workers`: 0 means one per core."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


@dataclass
class WorkerInfo:
    """Which worker this process is; the defaults describe the single-process server."""

    index: int = 0
    count: int = 1
    restarted: bool = False
    shared: SharedState | None = None
    relay_socket: socket.socket | None = field(default=None, repr=False)
    # The first-run setup token every worker accepts (chosen by the supervisor before fork).
    setup_token: str | None = field(default=None, repr=False)

    @property
    def leader(self) -> bool:
        return self.index == 0

    def runs(self, hook: str) -> bool:
        """Whether this worker runs the start-up hook called `hook`."""
        if hook in LEADER_ONLY:
            return self.leader
        if hook in FIRST_START_ONLY:
            return self.leader and not self.restarted
        return True
