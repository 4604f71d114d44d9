"""Toolbox fixtures: a catalog directory of small templates built on the local busybox image."""

from __future__ import annotations

from pathlib import Path

WEB = """\
services:
  web:
    image: local/busybox:latest
    init: true
    stop_grace_period: 1s
    command:
      - sh
      - -c
      - >-
        mkdir -p /data/www &&
        if [ ! -f /data/www/index.html ]; then
        echo "$${GREETING} $$RANDOM$$RANDOM" > /data/www/index.html; fi &&
        exec httpd -f -p 80 -h /data/www
    environment:
      GREETING: ${GREETING}
      ADMIN_TOKEN: ${ADMIN_TOKEN:-}
    ports:
      - "127.0.0.1:${WEB_PORT:-18080}:80"
    volumes:
      - site:/data
    networks:
      - backend
    labels:
      nekzus.toolbox.name: Test Web
      nekzus.toolbox.category: testing
      nekzus.toolbox.description: A busybox web server keeping its page on a named volume
      nekzus.toolbox.tags: "web, test"
      nekzus.enable: "true"
      nekzus.primary_port: "80"
      nekzus.app.id: ${SERVICE_NAME}
      nekzus.route.path: /apps/${SERVICE_NAME}/
volumes:
  site: {}
networks:
  backend: {}
"""

# The second service cannot start (its command does not exist), after the network, the volume and
# both containers were made and the first one started: the rollback must remove all of them.
BROKEN = """\
services:
  first:
    image: local/busybox:latest
    init: true
    command: ["sleep", "3600"]
    volumes:
      - scratch:/scratch
    labels:
      nekzus.toolbox.name: Broken
      nekzus.toolbox.category: testing
  second:
    image: local/busybox:latest
    command: ["/nonexistent-command"]
    depends_on: [first]
volumes:
  scratch: {}
"""

# An image only a (closed) loopback registry could serve: the pull fails without leaving the host.
NO_IMAGE = """\
services:
  app:
    image: 127.0.0.1:9/nekzus/missing:latest
    labels:
      nekzus.toolbox.name: Missing Image
      nekzus.toolbox.category: testing
"""

# Pulled from a "registry" the test runs on loopback that accepts connections and never answers, so
# the deployment stays in its pulling phase until the test is done with it.
HANG = """\
services:
  app:
    image: ${REGISTRY}/nekzus/hang:latest
    labels:
      nekzus.toolbox.name: Hanging Pull
      nekzus.toolbox.category: testing
"""

NO_LABELS = """\
services:
  app:
    image: local/busybox:latest
"""

NOT_COMPOSE = """\
services:
  app:
    image: local/busybox:latest
    ports: {"nonsense": true}
    labels:
      nekzus.toolbox.name: Invalid
      nekzus.toolbox.category: testing
"""


def write_catalog(root: Path) -> Path:
    for name, text in {
        "testweb": WEB,
        "broken": BROKEN,
        "noimage": NO_IMAGE,
        "hang": HANG,
        "nolabels": NO_LABELS,
        "notcompose": NOT_COMPOSE,
    }.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "docker-compose.yml").write_text(text)
    return root
