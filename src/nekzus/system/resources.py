"""System resources via psutil, reading the host's /proc when Nekzus runs in a container with the host
mounted (`system.host_root_path`).

psutil reads /proc through a module-wide path, so pointing it at `<root>/proc` is done once at start-up;
disk figures then describe the host root instead of the data directory.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

# Calls closer together than this reuse the last CPU sample: a delta over a few ms is noise.
CPU_MIN_INTERVAL = 0.5


def _percent(used: float, total: float) -> float:
    return round(used / total * 100, 2) if total else 0.0


@dataclass
class SystemResources:
    data_dir: Path
    database_path: Path
    host_root: Path | None = None
    _cpu: float = 0.0
    _cpu_at: float = 0.0
    _primed: bool = field(default=False)

    def __post_init__(self) -> None:
        if self.host_root is not None:
            psutil.PROCFS_PATH = str(self.host_root / "proc")

    def prime(self) -> None:
        """Take the first CPU sample so the first request already reports a real figure."""
        psutil.cpu_percent(interval=None)
        self._cpu_at = time.monotonic()
        self._primed = True

    def cpu(self) -> float:
        now = time.monotonic()
        if not self._primed:
            self.prime()
            time.sleep(0.1)
            now = time.monotonic()
        if now - self._cpu_at >= CPU_MIN_INTERVAL or self._cpu_at == 0.0 or self._cpu == 0.0:
            self._cpu = float(psutil.cpu_percent(interval=None))
            self._cpu_at = now
        return max(0.0, min(100.0, round(self._cpu, 2)))

    def storage_size(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += os.stat(str(self.database_path) + suffix).st_size
        return total

    def snapshot(self) -> dict[str, Any]:
        """The API's fields (cpu %, ram %, bytes, disk, storage_size, network) plus cores, load and uptime."""
        mem = psutil.virtual_memory()
        disk_path = self.host_root if self.host_root is not None else self.data_dir
        disk = psutil.disk_usage(str(disk_path))
        try:
            net = psutil.net_io_counters(pernic=False)
            network: dict[str, int] = {"rx_bytes": int(net.bytes_recv), "tx_bytes": int(net.bytes_sent)}
        except (OSError, AttributeError):
            network = {"rx_bytes": 0, "tx_bytes": 0}
        try:
            load = [round(x, 2) for x in psutil.getloadavg()]
        except OSError:
            load = [0.0, 0.0, 0.0]
        try:
            uptime = max(0, int(time.time() - psutil.boot_time()))
        except OSError:
            uptime = 0
        ram_used = int(mem.total - mem.available)
        return {
            "cpu": self.cpu(),
            "cpu_cores": psutil.cpu_count(logical=True) or 1,
            "load": load,
            "ram": _percent(ram_used, mem.total),
            "ram_used": ram_used,
            "ram_total": int(mem.total),
            "disk": _percent(disk.used, disk.used + disk.free),
            "disk_used": int(disk.used),
            "disk_total": int(disk.total),
            "storage_size": self.storage_size(),
            "network": network,
            "uptime": uptime,
        }
