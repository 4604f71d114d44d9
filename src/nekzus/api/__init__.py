"""Thin HTTP routers: parse the request, call the domain, shape the response."""
