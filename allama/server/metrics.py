"""`GET /metrics`: Prometheus text exposition of the server's and each model's counters."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from allama.server.model_registry import ModelRegistry

# (name, type, help, EngineStats field)
_MODEL_METRICS = [
    ("allama_sequences_active", "gauge", "Sequences prefilling or generating.", "active"),
    ("allama_sequences_queued", "gauge", "Requests waiting for a sequence slot.", "queued"),
    ("allama_prompt_tokens_total", "counter", "Prompt tokens of all admitted requests.", "prompt_tokens"),
    ("allama_prompt_tokens_evaluated_total", "counter", "Prompt tokens run through the model.",
     "prompt_tokens_evaluated"),
    ("allama_prefix_cache_hit_tokens_total", "counter", "Prompt tokens served from cached KV (prefix reuse).",
     "prompt_tokens_reused"),
    ("allama_generated_tokens_total", "counter", "Tokens generated.", "tokens_generated"),
    ("allama_decode_calls_total", "counter", "llama_decode calls.", "decode_calls"),
    ("allama_requests_finished_total", "counter", "Generation requests finished.", "requests_finished"),
    ("allama_requests_cancelled_total", "counter", "Generation requests cancelled.", "requests_cancelled"),
    ("allama_embedding_inputs_total", "counter", "Inputs embedded.", "embedding_inputs"),
]


@dataclass
class HttpCounters:
    """Requests seen by the HTTP layer."""

    requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (path, status) -> count
    in_flight: int = 0
    _last: dict[str, tuple[float, int]] = field(default_factory=dict)  # model -> (time, tokens) at last scrape

    def tokens_per_second(self, alias: str, generated: int) -> float:
        now = time.monotonic()
        then, before = self._last.get(alias, (now, generated))
        self._last[alias] = (now, generated)
        return (generated - before) / (now - then) if now > then else 0.0


def render_metrics(registry: ModelRegistry, http: HttpCounters) -> str:
    lines = ["# HELP allama_http_requests_total HTTP requests by path and status.",
             "# TYPE allama_http_requests_total counter"]
    for (path, status), count in sorted(http.requests.items()):
        lines.append(f'allama_http_requests_total{{path="{_escape(path)}",status="{status}"}} {count}')
    lines += ["# HELP allama_http_requests_in_flight HTTP requests being served.",
              "# TYPE allama_http_requests_in_flight gauge", f"allama_http_requests_in_flight {http.in_flight}"]
    stats = {alias: model.stats() for alias, model in registry.models.items()}
    for name, kind, help_text, attr in _MODEL_METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f'{name}{{model="{_escape(alias)}"}} {getattr(s, attr)}' for alias, s in stats.items()]
    lines += ["# HELP allama_generated_tokens_per_second Tokens generated per second since the last scrape.",
              "# TYPE allama_generated_tokens_per_second gauge"]
    lines += [f'allama_generated_tokens_per_second{{model="{_escape(alias)}"}} '
              f"{http.tokens_per_second(alias, s.tokens_generated):.3f}" for alias, s in stats.items()]
    lines += ["# HELP allama_model_loaded Whether the model is loaded (1) or not (0).",
              "# TYPE allama_model_loaded gauge"]
    lines += [f'allama_model_loaded{{model="{_escape(alias)}"}} {int(alias in registry.models)}'
              for alias in registry.settings]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
