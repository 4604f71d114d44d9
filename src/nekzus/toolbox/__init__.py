"""Toolbox: a catalog of Docker Compose templates and one-click deployments of them.

`templates` reads and validates the catalog, `compose` drives the real `docker-compose` binary, `service`
owns the deployment lifecycle (pending -> deploying -> deployed | failed) and its table.
"""
