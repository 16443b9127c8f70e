"""The aliases the live test server (tests/server/conftest.py) serves its two models under."""

CHAT, EMBED = "tiny-chat", "tiny-embed"
