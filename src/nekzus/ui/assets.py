"""The dashboard's static files, served under content-hashed names so browsers may cache them for a year.

Files are read once at start-up from the package; a changed file gets a new name, so a cached copy is never
stale. The HTML shell (never cached) names the current versions.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources

STATIC_PACKAGE = "nekzus.ui"
STATIC_DIR = "static"

MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    name: str
    hashed: str
    body: bytes
    media_type: str
    gzipped: bytes


class AssetTable:
    """Logical name (`app.js`) to hashed name (`app.3f2a1b9c0d.js`) and back."""

    def __init__(self) -> None:
        self.by_name: dict[str, Asset] = {}
        self.by_hashed: dict[str, Asset] = {}
        root = resources.files(STATIC_PACKAGE).joinpath(STATIC_DIR)
        files = {e.name: e.read_bytes() for e in root.iterdir() if e.is_file() and e.name != "index.html"}
        # A page module imports the shared one as `"{{app.js}}"`: it must load the very URL the shell
        # loads (one module instance), so those names are filled in, and hashed, after the files they name.
        later = sorted(n for n, b in files.items() if n.endswith(".js") and b"{{" in b)
        for name in [n for n in sorted(files) if n not in later] + later:
            suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
            if suffix not in MEDIA_TYPES:
                continue
            body = files[name]
            if name in later:
                for other in list(self.by_name):
                    body = body.replace(b"{{" + other.encode() + b"}}", self.url(other).encode())
            digest = hashlib.sha256(body).hexdigest()[:12]
            stem = name[: -len(suffix)]
            packed = gzip.compress(body, compresslevel=9, mtime=0)
            asset = Asset(name, f"{stem}.{digest}{suffix}", body, MEDIA_TYPES[suffix], packed)
            self.by_name[name] = asset
            self.by_hashed[asset.hashed] = asset
        self.shell_template = root.joinpath("index.html").read_text(encoding="utf-8")
        # One name for this set of files (shown by the settings page): changes whenever any file does.
        joined = "\n".join(sorted(a.hashed for a in self.by_name.values()))
        self.version = hashlib.sha256(joined.encode()).hexdigest()[:12]

    def url(self, name: str) -> str:
        return "/ui/assets/" + self.by_name[name].hashed

    def shell(self) -> bytes:
        html = self.shell_template.replace("{{version}}", self.version)
        for name in self.by_name:
            html = html.replace("{{" + name + "}}", self.url(name))
        return html.encode()
