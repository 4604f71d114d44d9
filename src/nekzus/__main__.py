from __future__ import annotations

from nekzus.cli import main

raise SystemExit(main())
