"""Start-up time and idle memory of the real `nekzus` process with the default config.

    python bench/startup.py [--quick] [--runs 5] [--src PATH]

For HTTPS (self-signed, the default) and `--insecure-http`, starts `python -m nekzus` on a loopback port
with a config that only sets the listen address and the database path (everything else default), then:

- **ready**: seconds from exec to the first `200` from `/readyz`, best and median of N runs, once with a
  fresh data dir each time (database created and migrated, TLS material generated) and once restarting
  on the data dir of the first run (the usual case);
- **memory** after ready and a few requests: RSS from /proc/<pid>/status, PSS and USS (private pages)
  from /proc/<pid>/smaps_rollup, per process (with `server.workers: 1` when the tree has that key);
- **imports**: the server run under `python -X importtime` until ready, the top offenders by self time
  (grouped by top-level package) and the slowest `nekzus.*` modules (cumulative);
- **allocations**: the server run with `tracemalloc` on until ready, the Python-level memory still held,
  grouped by package, and the top source lines.

`--src PATH` measures another source tree (`PYTHONPATH=PATH`) with this interpreter, for A/B runs. Wall
clock times move with the machine's load (printed with the table): compare trees in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from harness import NekzusProcess, cpu_seconds, http_status, memory_of, process_tree

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 180.0  # generous: a loaded 2-core machine takes a minute to start three servers
# Requests made after ready and before memory is read: probes, the dashboard page, an API refusal.
WARM_PATHS = ("/healthz", "/api/v1/healthz", "/", "/api/v1/apps", "/readyz")


class Instance(NekzusProcess):
    """One `nekzus` process on a loopback port, with its own data dir and the default config."""

    def __init__(self, data_dir: Path, tls: bool, src: Path | None, workers_key: bool) -> None:
        config = {"server": {"workers": 1}} if workers_key else {}
        super().__init__(data_dir, config, src=src, tls=tls, drop_env=("NEKZUS_", "PYTHON"))
        self.cpu = 0.0

    def run(
        self,
        prefix: list[str] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = READY_TIMEOUT,
    ) -> float:
        """Exec the server; return the seconds until /readyz answered 200 (CPU time in `self.cpu`)."""
        self.start(prefix, env)
        elapsed = self.wait_ready(timeout, interval=0.02)
        # Its own time and what children it waited for used (one process: `server.workers: 1`).
        self.cpu = cpu_seconds(self.pid, reaped=True)
        return elapsed

    def warm(self) -> None:
        for path in WARM_PATHS:
            http_status(self.port, path, self.tls, timeout=30.0)


def has_workers_key(src: Path | None) -> bool:
    code = "from nekzus.config.model import ServerConfig; print('workers' in ServerConfig.model_fields)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip() == "True"


class Timings:
    def __init__(self) -> None:
        self.fresh: list[float] = []
        self.fresh_cpu: list[float] = []
        self.restart: list[float] = []
        self.restart_cpu: list[float] = []
        self.mems: list[dict[str, float]] = []


def timing_runs(work: Path, tls: bool, runs: int, src: Path | None, workers_key: bool) -> Timings:
    """`runs` starts on fresh data dirs, then `runs` restarts on the first one's; memory after each."""
    out = Timings()
    scheme = "https" if tls else "http"
    first = work / f"{scheme}-0"
    for i in range(runs):
        inst = Instance(work / f"{scheme}-{i}", tls, src, workers_key)
        try:
            out.fresh.append(inst.run())
            out.fresh_cpu.append(inst.cpu)
        finally:
            inst.stop()
    for _ in range(runs):
        inst = Instance(first, tls, src, workers_key)
        try:
            out.restart.append(inst.run())
            out.restart_cpu.append(inst.cpu)
            inst.warm()
            time.sleep(1.0)  # let start-up tasks settle (first health checks, cookie flush)
            assert inst.proc is not None
            per = [memory_of(p) for p in process_tree(inst.pid)]
            mem = {k: statistics.fmean(m[k] for m in per) for k in per[0]}
            mem["procs"] = len(per)
            out.mems.append(mem)
        finally:
            inst.stop()
    return out


def restart_dir(work: Path, name: str) -> Path:
    """A copy of the first HTTPS run's data dir: the profiles measure a restart (database at head,
    TLS material present), the usual case, not the one-off first start (which also loads alembic)."""
    target = work / name
    shutil.copytree(work / "https-0", target, ignore=shutil.ignore_patterns("nekzus.log", "config.yaml"))
    return target


def import_profile(work: Path, src: Path | None, workers_key: bool) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, module) for every import the server made until it was ready."""
    inst = Instance(restart_dir(work, "importtime"), True, src, workers_key)
    try:
        inst.run(prefix=["-X", "importtime", "-m", "nekzus"], timeout=180)
        inst.warm()
    finally:
        inst.stop()
    rows = []
    for line in (inst.data_dir / "nekzus.log").read_text(errors="replace").splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, rest = line.split(":", 1)
        self_us, cum_us, name = rest.split("|")
        rows.append((int(self_us), int(cum_us), name.rstrip()))
    return rows


TRACE_SCRIPT = """
import os, sys, threading, time, tracemalloc, linecache
tracemalloc.start(1)
out, trigger = os.environ["NEKZUS_BENCH_TRACE_OUT"], os.environ["NEKZUS_BENCH_TRACE_TRIGGER"]
def watch():
    for _ in range(6000):  # at most ten minutes
        if os.path.exists(trigger):
            break
        time.sleep(0.1)
    else:
        return
    snap = tracemalloc.take_snapshot()
    with open(out + ".tmp", "w") as f:
        f.write(f"modules\\t{len(sys.modules)}\\n")
        for name, mod in list(sys.modules.items()):
            cached = getattr(mod, "__cached__", None)
            if cached and os.path.exists(cached):
                f.write(f"pyc\\t{name}\\t{os.path.getsize(cached)}\\n")
        for stat in snap.statistics("lineno"):
            fr = stat.traceback[0]
            f.write(f"{stat.size}\\t{stat.count}\\t{fr.filename}\\t{fr.lineno}\\n")
    os.replace(out + ".tmp", out)
threading.Thread(target=watch, daemon=True).start()
sys.argv = ["nekzus", *sys.argv[1:]]
from nekzus.cli import main
raise SystemExit(main())
"""


Allocs = tuple[int, list[tuple[int, int, str, int]], dict[str, int]]


def alloc_profile(work: Path, src: Path | None, workers_key: bool) -> Allocs:
    """Python allocations held once the server is ready: module count, [(bytes, count, file, line)] and
    the bytecode (.pyc bytes) of the loaded modules by package."""
    inst = Instance(restart_dir(work, "tracemalloc"), True, src, workers_key)
    out = inst.data_dir / "trace.tsv"
    trigger = inst.data_dir / "trace.go"
    env = {"NEKZUS_BENCH_TRACE_OUT": str(out), "NEKZUS_BENCH_TRACE_TRIGGER": str(trigger)}
    try:
        inst.run(prefix=["-c", TRACE_SCRIPT], env=env, timeout=300)  # tracemalloc slows it ~5x
        inst.warm()
        trigger.touch()
        deadline = time.monotonic() + 60
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        inst.stop()
    lines = out.read_text().splitlines()
    modules = int(lines[0].split("\t")[1])
    rows = []
    pyc: dict[str, int] = defaultdict(int)
    for line in lines[1:]:
        if line.startswith("pyc\t"):
            _, name, size = line.split("\t")
            pyc[owner_of_module(name)] += int(size)
            continue
        size, count, filename, lineno = line.split("\t")
        rows.append((int(size), int(count), filename, int(lineno)))
    return modules, rows, pyc


def owner_of_module(name: str) -> str:
    parts = name.strip().split(".")
    return f"nekzus.{parts[1]}" if parts[0] == "nekzus" and len(parts) > 1 else parts[0]


def package_of(filename: str) -> str:
    """A short owner for a source file: the top-level package, `nekzus.<sub>` for our own code."""
    path = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/src/"):
        if marker in path:
            parts = path.split(marker, 1)[1].split("/")
            if parts[0] == "nekzus" and len(parts) > 2:
                return f"nekzus.{parts[1]}"
            return parts[0].removesuffix(".py")
    if "/lib/python3" in path:
        return "stdlib:" + path.rsplit("/lib/python3", 1)[1].split("/", 2)[1].removesuffix(".py")
    return path.rsplit("/", 1)[-1] if path.startswith("<") else path


def short(filename: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def mib_shares(header: list[str], sizes: dict[str, int], total: int, top: int) -> str:
    """The `top` largest of `sizes` (bytes) as a table: MiB and share of `total`."""
    biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:top]
    return table(header, [[k, f"{v / 2**20:.2f}", f"{100 * v / total:.0f} %"] for k, v in biggest])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 runs per case")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--src", type=Path, default=None, help="measure this source tree (PYTHONPATH)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--no-profile", action="store_true", help="skip the importtime/tracemalloc runs")
    args = parser.parse_args()
    runs = 2 if args.quick else max(1, args.runs)
    src = args.src.resolve() if args.src else None
    workers_key = has_workers_key(src)
    load_before = os.getloadavg()[0]
    tree = str(src) if src else str(ROOT / "src")

    results = []
    with tempfile.TemporaryDirectory(prefix="nekzus-startup-") as tmp:
        work = Path(tmp)
        for tls in (True, False):
            results.append((tls, timing_runs(work, tls, runs, src, workers_key)))
        imports = [] if args.no_profile else import_profile(work, src, workers_key)
        modules, allocs, pyc = (0, [], {}) if args.no_profile else alloc_profile(work, src, workers_key)
    load_after = os.getloadavg()[0]

    print(
        f"\n## Start-up and memory: {tree} (runs={runs}, load average {load_before:.1f} → {load_after:.1f})\n"
    )
    print("Ready = exec to first 200 from /readyz; CPU = the server's user+system seconds until then (load-")
    print("independent). Memory after ready + a few requests + 1 s, per process")
    print(f"({'server.workers: 1' if workers_key else 'one process'}), MiB.\n")
    rows = []
    for tls, t in results:
        mode = "https (self-signed)" if tls else "http (--insecure-http)"
        mems = t.mems
        rss = statistics.median(m["VmRSS"] for m in mems)
        rows.append(
            [
                mode,
                f"{min(t.fresh):.2f} / {statistics.median(t.fresh):.2f} "
                f"({statistics.median(t.fresh_cpu):.2f})",
                f"{min(t.restart):.2f} / {statistics.median(t.restart):.2f} "
                f"({statistics.median(t.restart_cpu):.2f})",
                f"{rss:.1f}",
                f"{statistics.median(m['Pss'] for m in mems):.1f}",
                f"{statistics.median(m['Uss'] for m in mems):.1f}",
                f"{statistics.median(m['VmHWM'] for m in mems):.1f}",
            ]
        )
    print(
        table(
            [
                "mode",
                "ready, fresh data dir: best / median s (CPU s)",
                "ready, restart: best / median s (CPU s)",
                "RSS",
                "PSS",
                "USS",
                "peak RSS",
            ],
            rows,
        )
    )
    if imports:
        total = sum(s for s, _, _ in imports)
        by_pkg: dict[str, int] = defaultdict(int)
        count: dict[str, int] = defaultdict(int)
        for self_us, _, name in imports:
            key = owner_of_module(name)
            by_pkg[key] += self_us
            count[key] += 1
        print(
            f"\nImports until ready (-X importtime, https): {len(imports)} modules, {total / 1e6:.2f} s self"
        )
        print(
            "time in total (the run is slower than a plain start: the profiler writes a line per module).\n"
        )
        top = sorted(by_pkg.items(), key=lambda kv: -kv[1])[: args.top]
        print(
            table(
                ["package", "modules", "self ms", "share"],
                [[k, str(count[k]), f"{v / 1000:.0f}", f"{100 * v / total:.0f} %"] for k, v in top],
            )
        )
        ours = sorted((r for r in imports if r[2].strip().startswith("nekzus")), key=lambda r: -r[1])
        print("\nSlowest nekzus modules (cumulative, includes what they import first):\n")
        print(
            table(
                ["module", "cumulative ms", "self ms"],
                [[n.strip(), f"{c / 1000:.0f}", f"{s / 1000:.0f}"] for s, c, n in ours[: args.top]],
            )
        )
    if allocs:
        held = sum(a[0] for a in allocs)
        pkg_size: dict[str, int] = defaultdict(int)
        for size, _, filename, _ in allocs:
            pkg_size[package_of(filename)] += size
        print(
            f"\nPython allocations held when ready (tracemalloc, https): {held / 2**20:.1f} MiB, "
            f"{modules} modules loaded\n"
        )
        print(mib_shares(["owner", "MiB", "share"], pkg_size, held, args.top))
        total_pyc = sum(pyc.values())
        print(
            "\nBytecode behind `<frozen importlib._bootstrap_external>` (code objects unmarshalled):"
            f" {total_pyc / 2**20:.1f} MiB of .pyc loaded; in memory the code objects take ~1.5-2x that.\n"
        )
        print(mib_shares(["package", ".pyc MiB", "share"], pyc, total_pyc, args.top))
        print("\nTop lines:\n")
        print(
            table(
                ["file:line", "KiB", "blocks"],
                [[f"{short(f)}:{ln}", f"{s / 1024:.0f}", str(c)] for s, c, f, ln in allocs[: args.top]],
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
