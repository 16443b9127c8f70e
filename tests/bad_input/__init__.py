"""The bad-input corpus: each case runs in a forked child (runner.py), which must end with a
clear Python exception or HTTP 4xx, never die, hang or wedge the engine."""
