"""The replicated catalog: one Yjs document (pycrdt) holding every instance's published apps.

Layout: a top-level map `apps`, keyed `<originPeerId>/<appId>`, whose values are JSON strings describing the
app and its route. Each instance writes only the keys of its own origin, so concurrent writers never fight
over a key; deletes are Yjs deletions, kept in the document's delete set, so they converge like updates do.
Synchronisation is Yjs' state-vector exchange: "here is what I have" -> "here is what you are missing".
"""

from __future__ import annotations

import json
from typing import Any

from pycrdt import Doc, Map

SEP = "/"


class CatalogDocument:
    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.apps: Map[Any] = self.doc.get("apps", type=Map)
        # Plain-Python mirrors, dropped whenever the document changes (it only changes through this class).
        self._raw: dict[str, Any] | None = None
        self._entries: dict[str, dict[str, Any]] | None = None

    # -- sync protocol ------------------------------------------------------------------------------

    def state_vector(self) -> bytes:
        return bytes(self.doc.get_state())

    def snapshot(self) -> bytes:
        """The whole document as one update (what is persisted)."""
        return bytes(self.doc.get_update())

    def missing_for(self, state_vector: bytes) -> bytes:
        """What a peer holding `state_vector` lacks."""
        return bytes(self.doc.get_update(state_vector))

    def apply(self, update: bytes) -> None:
        self._raw = self._entries = None
        self.doc.apply_update(update)

    # -- content ------------------------------------------------------------------------------------

    def entries(self) -> dict[str, dict[str, Any]]:
        if self._entries is not None:
            return self._entries
        out: dict[str, dict[str, Any]] = {}
        for key, raw in self.raw().items():
            if not isinstance(raw, str):
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, dict):
                out[key] = value
        self._entries = out
        return out

    def publish(self, origin: str, entries: dict[str, dict[str, Any]]) -> bool:
        """Make the keys of `origin` equal `entries` (app id -> description). True if anything changed."""
        prefix = origin + SEP
        wanted = {prefix + app_id: json.dumps(value, sort_keys=True) for app_id, value in entries.items()}
        current = self.raw()
        stale = [k for k in current if k.startswith(prefix) and k not in wanted]
        fresh = {k: v for k, v in wanted.items() if current.get(k) != v}
        if not stale and not fresh:
            return False
        self._raw = self._entries = None
        with self.doc.transaction():
            for key in stale:
                del self.apps[key]
            for key, text in fresh.items():
                self.apps[key] = text
        return True

    def raw(self) -> dict[str, Any]:
        """The map as plain Python in one call (per-key access into the document is far slower)."""
        if self._raw is None:
            value = self.apps.to_py()
            self._raw = value if isinstance(value, dict) else {}
        return self._raw


def split_key(key: str) -> tuple[str, str]:
    origin, _, app_id = key.partition(SEP)
    return origin, app_id
