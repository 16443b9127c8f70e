"""The continuous-batching engine: one decode thread per model drives every request.

Public pieces: `Scheduler` (submit, cancel, stats, close), `Request` (what to
generate) and `Output` (what comes back, step by step).
"""

from allama.engine.config import EngineConfig
from allama.engine.request import Output, Request
from allama.engine.scheduler import Scheduler
from allama.engine.stats import EngineStats

__all__ = ["EngineConfig", "EngineStats", "Output", "Request", "Scheduler"]
