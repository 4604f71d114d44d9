"""The catalog domain: apps, routes, their health, favicons and per-device session cookies."""
