"""The web dashboard: browser sessions and the static front end (no build step, no CDN)."""
