"""deploy/haproxy/allama.cfg is a valid HAProxy config (with and without its environment
variables), and docs/deploying.md quotes it as it is."""

from __future__ import annotations

import os
import re
import subprocess

from ..paths import REPO_ROOT
from .balancer import haproxy_binary

CONFIG = REPO_ROOT / "deploy" / "haproxy" / "allama.cfg"
EXCERPT_HEADER = "# deploy/haproxy/allama.cfg (excerpt)"


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([haproxy_binary(), "-c", "-f", str(CONFIG)], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **env})


def test_the_config_is_valid_with_its_defaults_and_with_addresses_from_the_environment():
    defaults = check({})
    assert defaults.returncode == 0, defaults.stdout + defaults.stderr
    given = check({"ALLAMA_LISTEN": "127.0.0.1:9000", "ALLAMA_STATS": "127.0.0.1:9001",
                   "ALLAMA_REPLICA_1": "127.0.0.2:8000", "ALLAMA_REPLICA_2": "127.0.0.3:8000"})
    assert given.returncode == 0, given.stdout + given.stderr


def test_the_guide_quotes_the_shipped_config():
    shipped = {line.strip() for line in CONFIG.read_text().splitlines()}
    blocks = [b for b in re.findall(r"```haproxy\n(.*?)```", (REPO_ROOT / "docs" / "deploying.md").read_text(), re.S)
              if b.startswith(EXCERPT_HEADER)]
    assert blocks, f"docs/deploying.md has no block starting {EXCERPT_HEADER!r}"
    quoted = [line.strip() for block in blocks for line in block.splitlines()[1:] if line.strip()]
    assert [line for line in quoted if line not in shipped] == []
