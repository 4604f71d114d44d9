"""Run every benchmark and print one summary table (what `make bench` runs).

    .venv/bin/python bench/run_all.py            # the full set, about 6-8 minutes
    .venv/bin/python bench/run_all.py --quick    # smoke run: short durations, fewer clients
    .venv/bin/python bench/run_all.py --only fanout scale

Each benchmark stays runnable on its own (`bench/proxy.py`, `bench/ws_fanout.py`, `bench/scale.py`,
`bench/startup.py` when present, `bench/ui_overview.py`); this script runs them one after the other as
subprocesses (their own output is passed through), collects their results and prints a summary: the
proxy against Caddy and nginx in the same run (ratios), the fan-out figures, the scale table's spread
(slowest/fastest CPU per request across route, device and key counts), the memory per connection and the
dashboard overview's page weight and time to interactive. Benchmarks whose tools are missing are reported
as skipped, not silently left out. Exit status: non-zero when a benchmark failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
Row = tuple[str, str, str, str]  # measurement, Nekzus, peer, ratio


def run(name: str, argv: list[str], timeout: float) -> tuple[int, str]:
    """Run one benchmark, echo its output as it comes, return (status, stdout)."""
    print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        print(f"=== {name}: timed out after {timeout:.0f} s", flush=True)
        return 124, ""
    print(proc.stdout, end="", flush=True)
    print(f"=== {name}: exit {proc.returncode} after {time.monotonic() - started:.0f} s", flush=True)
    return proc.returncode, proc.stdout


# proxy.py's rows: a 36-character label, the proxy's name (`nekzus`, `baseline`, or a variant such as a
# worker count, e.g. `nekzus-w2`), then rate, p50 and p99.
PROXY_LINE = re.compile(
    r"^(?P<label>.{36}) (?P<name>nekzus\S*|baseline\S*|caddy|nginx)\s+(?P<rate>[\d.]+)\s+"
    r"(?P<p50>[\d.]+|nan)\s+(?P<p99>[\d.]+|nan)"
)
CPU_LINE = re.compile(r"^\s+(?P<name>nekzus\S*|baseline\S*|caddy)\s+CPU per request/message: (?P<cpu>[\d.]+)")


def proxy_rows(stdout: str) -> list[Row]:
    """Parse bench/proxy.py's table: one row per test with Nekzus, Caddy and nginx side by side."""
    tests: dict[str, dict[str, tuple[float, float]]] = {}
    cpu: dict[tuple[str, str], float] = {}
    current = ""
    for line in stdout.splitlines():
        match = PROXY_LINE.match(line)
        if match:
            current = match["label"].strip()
            tests.setdefault(current, {})[match["name"]] = (float(match["rate"]), float(match["p99"]))
            continue
        match = CPU_LINE.match(line)
        if match and current:
            cpu[current, match["name"]] = float(match["cpu"])
    rows: list[Row] = []
    for label, by in tests.items():
        for name, ours in by.items():
            if name in ("caddy", "nginx"):
                continue
            for peer in ("caddy", "nginx"):
                theirs = by.get(peer)
                if theirs is None:
                    continue
                rows.append(
                    (
                        f"{label}, {name} vs {peer}",
                        f"{ours[0]:,.0f} (p99 {ours[1]:.1f} ms)",
                        f"{theirs[0]:,.0f} (p99 {theirs[1]:.1f} ms)",
                        f"{ours[0] / theirs[0]:.2f}x rate, {ours[1] / theirs[1]:.2f}x p99"
                        if theirs[0]
                        else "",
                    )
                )
            if (label, name) in cpu:
                peer_cpu = cpu.get((label, "caddy"))
                rows.append(
                    (
                        f"{label}, {name} vs caddy: CPU per op",
                        f"{cpu[label, name]:.0f} µs",
                        f"{peer_cpu:.0f} µs" if peer_cpu else "",
                        f"{cpu[label, name] / peer_cpu:.2f}x CPU" if peer_cpu else "",
                    )
                )
    return rows


def fanout_rows(data: dict[str, Any]) -> list[Row]:
    r = data["results"]["nekzus"]
    rows: list[Row] = [
        (
            f"fan-out {r['clients']} clients x {r['events']} events: delivered",
            f"{r['delivered']:,} / {r['expected']:,}",
            "",
            "",
        ),
        ("fan-out latency p50 / p99", f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms", "", "target p99 < 50 ms"),
        ("fan-out server CPU per delivered message", f"{r['cpu_us_per_msg']:.1f} µs", "", ""),
    ]
    base = data["results"].get("baseline")
    if base:
        rows[-1] = (
            rows[-1][0],
            rows[-1][1],
            f"{base['cpu_us_per_msg']:.1f} µs (baseline)",
            f"{r['cpu_us_per_msg'] / base['cpu_us_per_msg']:.2f}x",
        )
    return rows


def scale_rows(data: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    table = data["rows"]
    if table:
        for kind in ("device", "apikey"):
            picked = [r for r in table if r["credential"] == kind]
            if not picked:
                continue
            cpus = [r["cpu_us_per_req"] for r in picked]
            low = min(picked, key=lambda r: (r["routes"], r["devices"]))
            high = max(picked, key=lambda r: (r["routes"], r["devices"]))
            rows.append(
                (
                    f"scale ({kind} credential): CPU/req {low['routes']} route(s), {low['devices']} device(s)"
                    f" -> {high['routes']} routes, {high['devices']:,} devices, {high['keys']:,} keys",
                    f"{low['cpu_us_per_req']:.0f} -> {high['cpu_us_per_req']:.0f} µs",
                    "",
                    f"spread {max(cpus) / min(cpus):.2f}x",
                )
            )
    for label, seconds in (data.get("lookups_s") or {}).items():
        rows.append((f"in process: {label}", f"{seconds * 1e9:.0f} ns", "", ""))
    mem = data.get("memory") or {}
    if mem:
        rows.append(
            ("memory per idle keep-alive HTTP connection", f"{mem['http_kib_per_conn']:.1f} KiB", "", "")
        )
        rows.append(("memory per open WebSocket", f"{mem['ws_kib_per_conn']:.1f} KiB", "", ""))
    return rows


def startup_rows(stdout: str) -> list[Row]:
    """bench/startup.py prints a Markdown table, one row per mode (https, http): keep those rows."""
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    if not lines:
        return []
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows: list[Row] = []
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != len(header) or not cells[0].startswith("http"):
            continue
        for name, value in zip(header[1:], cells[1:], strict=True):
            unit = " MiB" if name in ("RSS", "PSS", "USS", "peak RSS") else ""
            rows.append((f"startup {cells[0]}: {name}", value + unit, "", ""))
    return rows


def json_rows(name: str, data: Any, prefix: str = "") -> list[Row]:
    """Flatten an unknown benchmark's JSON (numbers and short strings) into rows."""
    rows: list[Row] = []
    if isinstance(data, dict):
        for key, value in data.items():
            rows.extend(json_rows(name, value, f"{prefix}{key} " if prefix or key else prefix))
    elif isinstance(data, int | float | str) and len(str(data)) < 40:
        value = f"{data:,.2f}" if isinstance(data, float) else str(data)
        rows.append((f"{name}: {prefix.strip()}", value, "", ""))
    return rows[:20]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run (about 2 minutes)")
    parser.add_argument("--only", nargs="+", choices=["proxy", "fanout", "scale", "startup", "dashboard"])
    parser.add_argument(
        "--baseline-src", type=Path, help="A/B: also run Nekzus from this source tree (proxy, fan-out)"
    )
    args = parser.parse_args()
    wanted = set(args.only or ["proxy", "fanout", "scale", "startup", "dashboard"])
    summary: list[Row] = []
    failed: list[str] = []
    skipped: list[str] = []
    notes: list[str] = []
    baseline = ["--baseline-src", str(args.baseline_src)] if args.baseline_src else []
    with tempfile.TemporaryDirectory(prefix="nekzus-bench-all-") as tmp:
        out = Path(tmp)
        if "proxy" in wanted:
            timing = ["--duration", "2"] if args.quick else ["--duration", "4", "--rounds", "3"]
            argv = [PYTHON, str(BENCH / "proxy.py"), *timing, *baseline]
            status, stdout = run("proxy (small GET, 1 MiB GET, WebSocket echo)", argv, 400)
            if status == 2:
                skipped.append("proxy (nginx/caddy/wrk missing)")
            elif status != 0:
                failed.append("proxy")
            summary += proxy_rows(stdout)
        if "fanout" in wanted:
            size = ["--clients", "200", "--events", "20"] if args.quick else []
            argv = [PYTHON, str(BENCH / "ws_fanout.py"), *size, "--json", str(out / "fanout.json"), *baseline]
            status, _ = run("WebSocket fan-out", argv, 300)
            data = json.loads((out / "fanout.json").read_text()) if (out / "fanout.json").exists() else None
            if data is not None:
                summary += fanout_rows(data)
            if data is None or any(r["delivered"] != r["expected"] for r in data["results"].values()):
                failed.append("fan-out (crashed or some client missed an event)")
            elif status != 0:
                notes.append("fan-out: p99 above its 50 ms target in this run (machine load? see its table)")
        if "scale" in wanted:
            argv = [PYTHON, str(BENCH / "scale.py"), "--json", str(out / "scale.json")]
            if args.quick:
                argv.append("--quick")
            status, _ = run("scale (routes, devices, API keys, memory per connection)", argv, 400)
            if status == 2:
                skipped.append("scale (nginx/wrk missing)")
            elif status != 0:
                failed.append("scale")
            if (out / "scale.json").exists():
                summary += scale_rows(json.loads((out / "scale.json").read_text()))
        startup = BENCH / "startup.py"
        if "startup" in wanted:
            if not startup.exists():
                skipped.append("startup (bench/startup.py not present)")
            else:
                helptext = subprocess.run(
                    [PYTHON, str(startup), "--help"], capture_output=True, text=True, check=False
                ).stdout
                argv = [PYTHON, str(startup)]
                for flag in ("--quick", "--no-profile") if args.quick else ():
                    if flag in helptext:
                        argv.append(flag)
                if "--json" in helptext:
                    argv += ["--json", str(out / "startup.json")]
                status, stdout = run("startup and idle RSS", argv, 400)
                if status != 0:
                    failed.append("startup")
                if (out / "startup.json").exists():
                    summary += json_rows("startup", json.loads((out / "startup.json").read_text()))
                else:
                    summary += startup_rows(stdout)
        if "dashboard" in wanted:
            if not Path("/usr/bin/chromium").exists():
                skipped.append("dashboard (chromium missing)")
            else:
                argv = [PYTHON, str(BENCH / "ui_overview.py")]
                status, stdout = run("dashboard overview (page weight, time to interactive)", argv, 300)
                if status != 0:
                    failed.append("dashboard")
                for text in stdout.splitlines():
                    label, _, figures = text.partition(": ")
                    if label in ("cold cache", "warm cache"):
                        summary.append((f"dashboard overview, {label}", figures, "", ""))

    load = os.getloadavg()
    print(
        f"\n=== Summary ({'quick' if args.quick else 'full'} run, load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs)"
    )
    headers = ("measurement", "Nekzus", "peer", "Nekzus / peer")
    widths = [
        max(len(headers[i]), *(len(r[i]) for r in summary)) if summary else len(headers[i]) for i in range(4)
    ]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in summary:
        print("  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)))
    for name in skipped:
        print(f"skipped: {name}")
    for note in notes:
        print(f"note: {note}")
    for name in failed:
        print(f"FAILED: {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
