"""The HAProxy binary the deploy tests and the replicas benchmark's smoke test run."""

from __future__ import annotations

import os
import shutil

import pytest


def haproxy_binary() -> str:
    """Its path; without it the calling test skips, unless ALLAMA_REQUIRE_HAPROXY=1 (CI), where
    that is a failure."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        reason = "the haproxy binary is not installed (Debian: apt-get install haproxy)"
        if os.environ.get("ALLAMA_REQUIRE_HAPROXY") == "1":
            pytest.fail(reason + " (ALLAMA_REQUIRE_HAPROXY=1)", pytrace=False)
        pytest.skip(reason)
    return found
