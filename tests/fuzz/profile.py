"""The fuzzing profile: a bounded run in the suite; `scripts/fuzz.sh` runs the long one
(ALLAMA_FUZZ_EXAMPLES=20000 and no deadline)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "allama-fuzz",
    max_examples=int(os.environ.get("ALLAMA_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    derandomize=os.environ.get("ALLAMA_FUZZ_EXAMPLES") is None,  # the suite's run is reproducible
)
FUZZ = settings.get_profile("allama-fuzz")
