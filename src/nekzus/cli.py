"""The `nekzus` command: flags compatible with the existing Nekzus (single or double dash)."""

from __future__ import annotations

import argparse
import sys

from nekzus import __version__

DEFAULT_CONFIG = "configs/config.example.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nekzus", description="Nekzus: secure gateway for the home lab")
    parser.add_argument(
        "--config",
        "-config",
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help="config file (YAML or JSON); a missing file means defaults",
    )
    parser.add_argument(
        "--insecure-http",
        "-insecure-http",
        action="store_true",
        help="serve plain HTTP (default address :8080) instead of HTTPS",
    )
    parser.add_argument(
        "--health",
        "-health",
        action="store_true",
        help="probe a running instance's /api/v1/healthz and exit 0 (healthy) or 1",
    )
    parser.add_argument(
        "--health-addr",
        "-health-addr",
        default="http://localhost:8080",
        metavar="URL",
        help="base address probed by --health",
    )
    parser.add_argument("--version", "-version", action="version", version=f"nekzus {__version__}")
    return parser


def health_probe(base: str) -> int:
    import ssl
    import urllib.error
    import urllib.request

    url = base.rstrip("/") + "/api/v1/healthz"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: status {exc.code}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"health check failed: {reason}", file=sys.stderr)
        return 1
    if status == 200:
        print("healthy")
        return 0
    print(f"unhealthy: status {status}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.health:
        return health_probe(args.health_addr)

    import gc
    import os

    # Start-up creates ~200,000 objects that live as long as the process: the cyclic collector's passes
    # over them while they are being created are wasted work (~15 % of the time to ready). Collection
    # resumes once the app is built (`nekzus.server.collect_from_now_on`).
    gc.disable()

    from nekzus.config import ConfigError, load_config
    from nekzus.logsetup import setup_logging

    debug = os.environ.get("NEKZUS_DEBUG", "").strip().lower() in ("true", "1")
    setup_logging("text", debug)
    try:
        config = load_config(args.config, insecure_http=args.insecure_http)
    except ConfigError as exc:
        print(f"nekzus: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.server.log_format, config.debug)
    if os.path.exists(args.config):
        _warn_unknown_keys(args.config)

    from nekzus.server import run

    return run(config, config_path=args.config)


def _warn_unknown_keys(path: str) -> None:
    import logging

    from nekzus.config.loader import read_file, unknown_keys

    try:
        keys = unknown_keys(read_file(path))
    except Exception:
        return
    if keys:
        logging.getLogger("nekzus.config").warning("ignoring unknown config keys: %s", ", ".join(keys))


if __name__ == "__main__":
    raise SystemExit(main())
