"""Property-based requests from the OpenAPI schema (schemathesis): no endpoint answers any
of them with a 5xx, and none hangs. Tight limits keep each generated request cheap."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from allama.server import ModelSettings, ServerSettings, create_app

from .live_server import serving


@pytest.fixture(scope="module")
def api_schema(llama_f32_path, bert_path):
    app = create_app(
        server_settings=ServerSettings(max_tokens_limit=8, max_n=2, max_prompt_tokens=64, request_timeout=20,
                                       disable_ping_events=True),
        model_settings=[ModelSettings(model=str(llama_f32_path), model_alias="chat", n_ctx=256, n_parallel=2),
                        ModelSettings(model=str(bert_path), model_alias="embed", n_ctx=128, n_parallel=1)])
    with serving(app) as url:
        yield schemathesis.openapi.from_url(url + "/openapi.json")


def test_no_server_errors(api_schema):
    # schemathesis's strategies driven by hypothesis directly (its pytest plugin follows
    # pytest's internals, which change between releases)
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @settings(max_examples=8, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def no_server_error(case):
            response = case.call(timeout=30)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])

        no_server_error()

