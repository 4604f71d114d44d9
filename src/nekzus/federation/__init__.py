"""Federation: several Nekzus instances sharing one app catalog over an authenticated channel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nekzus.domains import Key

if TYPE_CHECKING:
    from nekzus.federation.service import FederationService

# The running federation service, offered to other routers (the app list shows remote apps) when enabled.
FEDERATION: Key[FederationService] = Key("federation")
