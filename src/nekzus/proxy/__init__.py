"""The reverse proxy: `/apps/...` (and routed subdomains) straight from the ASGI server to upstreams."""
