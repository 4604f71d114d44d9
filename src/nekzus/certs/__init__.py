"""Certificates: the served TLS certificate and (later) managed certificates."""
