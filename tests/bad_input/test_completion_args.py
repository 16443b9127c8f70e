"""Bad create_completion arguments: prompts, sampling values, stops, biases, grammars and
counts. Each is a ValueError or TypeError naming the argument (GrammarError,
ContextOverflowError where they apply), and the model still serves afterwards."""

from __future__ import annotations

import math
from typing import Any

import pytest

from . import scenarios
from .runner import expect_raises, expect_returns, run_case

NAN, INF = math.nan, math.inf


def case(name: str, kwargs: dict[str, Any], expected: tuple[str, ...] | None, prompt: Any = "Hello") -> Any:
    """create_completion(prompt, max_tokens=2, **kwargs) and the exception expected (None: accepted)."""
    return pytest.param(prompt, kwargs, expected, id=name)


SAMPLING = [
    case("temperature-nan", {"temperature": NAN}, ("ValueError", "temperature")),
    case("temperature-inf", {"temperature": INF}, ("ValueError", "temperature")),
    case("temperature-str", {"temperature": "hot"}, ("TypeError", "temperature")),
    case("temperature-none", {"temperature": None}, ("TypeError", "temperature")),
    case("top_p-nan", {"top_p": NAN}, ("ValueError", "top_p")),
    case("top_p-above-1", {"top_p": 1.5}, ("ValueError", "top_p")),
    case("top_p-negative", {"top_p": -0.1}, ("ValueError", "top_p")),
    case("top_p-inf", {"top_p": INF}, ("ValueError", "top_p")),
    case("top_p-str", {"top_p": "0.9"}, ("TypeError", "top_p")),
    case("top_k-float", {"top_k": 1.5}, ("TypeError", "top_k")),
    case("top_k-str", {"top_k": "40"}, ("TypeError", "top_k")),
    case("top_k-over-int32", {"top_k": 2**40}, ("ValueError", "top_k")),
    case("min_p-nan", {"min_p": NAN}, ("ValueError", "min_p")),
    case("min_p-above-1", {"min_p": 1.5}, ("ValueError", "min_p")),
    case("min_p-negative", {"min_p": -1.0}, ("ValueError", "min_p")),
    case("typical_p-nan", {"typical_p": NAN}, ("ValueError", "typical_p")),
    case("typical_p-above-1", {"typical_p": 2.0}, ("ValueError", "typical_p")),
    case("typical_p-negative", {"typical_p": -0.5}, ("ValueError", "typical_p")),
    case("repeat_penalty-nan", {"repeat_penalty": NAN}, ("ValueError", "repeat_penalty")),
    case("repeat_penalty-0", {"repeat_penalty": 0.0}, ("ValueError", "repeat_penalty")),
    case("repeat_penalty-negative", {"repeat_penalty": -1.0}, ("ValueError", "repeat_penalty")),
    case("repeat_penalty-inf", {"repeat_penalty": INF}, ("ValueError", "repeat_penalty")),
    case("frequency_penalty-nan", {"frequency_penalty": NAN}, ("ValueError", "frequency_penalty")),
    case("presence_penalty-inf", {"presence_penalty": -INF}, ("ValueError", "presence_penalty")),
    case("repeat_last_n-minus-2", {"repeat_last_n": -2}, ("ValueError", "repeat_last_n")),
    case("repeat_last_n-float", {"repeat_last_n": 2.5}, ("TypeError", "repeat_last_n")),
    case("mirostat_mode-3", {"mirostat_mode": 3}, ("ValueError", "mirostat_mode")),
    case("mirostat_mode-negative", {"mirostat_mode": -1}, ("ValueError", "mirostat_mode")),
    case("mirostat_tau-nan", {"mirostat_mode": 2, "mirostat_tau": NAN}, ("ValueError", "mirostat_tau")),
    case("mirostat_tau-negative", {"mirostat_mode": 2, "mirostat_tau": -5.0}, ("ValueError", "mirostat_tau")),
    case("mirostat_eta-inf", {"mirostat_mode": 1, "mirostat_eta": INF}, ("ValueError", "mirostat_eta")),
    case("mirostat_eta-negative", {"mirostat_mode": 1, "mirostat_eta": -0.1}, ("ValueError", "mirostat_eta")),
    case("xtc_probability-2", {"xtc_probability": 2.0}, ("ValueError", "xtc_probability")),
    case("xtc_probability-nan", {"xtc_probability": NAN}, ("ValueError", "xtc_probability")),
    case("xtc_threshold-nan", {"xtc_probability": 0.5, "xtc_threshold": NAN}, ("ValueError", "xtc_threshold")),
    case("dry_multiplier-negative", {"dry_multiplier": -1.0}, ("ValueError", "dry_multiplier")),
    case("dry_base-nan", {"dry_multiplier": 0.8, "dry_base": NAN}, ("ValueError", "dry_base")),
    case("dry_allowed_length-negative", {"dry_multiplier": 0.8, "dry_allowed_length": -1},
         ("ValueError", "dry_allowed_length")),
    case("dry_penalty_last_n-minus-2", {"dry_multiplier": 0.8, "dry_penalty_last_n": -2},
         ("ValueError", "dry_penalty_last_n")),
    case("dry_sequence_breakers-str", {"dry_multiplier": 0.8, "dry_sequence_breakers": "\n"},
         ("TypeError", "dry_sequence_breakers")),
    case("dry_sequence_breakers-ints", {"dry_multiplier": 0.8, "dry_sequence_breakers": [1, 2]},
         ("TypeError", "dry_sequence_breakers")),
    case("top_n_sigma-nan", {"top_n_sigma": NAN}, ("ValueError", "top_n_sigma")),
    case("tfs_z-str", {"tfs_z": "x"}, ("TypeError", "tfs_z")),
    case("seed-str", {"seed": "x"}, ("TypeError", "seed")),
    case("seed-float", {"seed": 1.5}, ("TypeError", "seed")),
]

COUNTS = [
    case("n-0", {"n": 0}, ("ValueError", "n")),
    case("n-negative", {"n": -3}, ("ValueError", "n")),
    case("n-above-n_parallel", {"n": 3}, ("ValueError", "n_parallel")),
    case("n-huge", {"n": 10**9}, ("ValueError", "n_parallel")),
    case("n-str", {"n": "2"}, ("TypeError", "n")),
    case("max_tokens-str", {"max_tokens": "16"}, ("TypeError", "max_tokens")),
    case("max_tokens-float", {"max_tokens": 2.5}, ("TypeError", "max_tokens")),
    case("logprobs-negative", {"logprobs": -1}, ("ValueError", "logprobs")),
    case("logprobs-str", {"logprobs": "5"}, ("TypeError", "logprobs")),
    case("priority-str", {"priority": "high"}, ("TypeError", "priority")),
    case("timeout-negative", {"timeout": -1.0}, ("ValueError", "timeout")),
    case("timeout-nan", {"timeout": NAN}, ("ValueError", "timeout")),
    case("stream_options-str", {"stream": True, "stream_options": "include_usage"}, ("TypeError", "stream_options")),
    case("max_prompt_tokens-exceeded", {"max_prompt_tokens": 1}, ("ContextOverflowError", "at most 1")),
]

STOPS = [
    case("stop-empty-string", {"stop": ""}, ("ValueError", "stop")),
    case("stop-list-with-empty-string", {"stop": ["end", ""]}, ("ValueError", "stop")),
    case("stop-int", {"stop": 5}, ("TypeError", "stop")),
    case("stop-list-of-ints", {"stop": [5]}, ("TypeError", "stop")),
    case("stop-list-with-none", {"stop": ["a", None]}, ("TypeError", "stop")),
    case("stop-bytes", {"stop": b"end"}, ("TypeError", "stop")),
    case("stop-dict", {"stop": {"a": 1}}, ("TypeError", "stop")),
]

LOGIT_BIAS = [
    case("logit_bias-token-out-of-range", {"logit_bias": {10**6: 1.0}}, ("ValueError", "out of range")),
    case("logit_bias-token-negative", {"logit_bias": {-1: 1.0}}, ("ValueError", "out of range")),
    case("logit_bias-token-over-int32", {"logit_bias": {2**40: 1.0}}, ("ValueError", "out of range")),
    case("logit_bias-key-not-a-number", {"logit_bias": {"abc": 1.0}}, ("ValueError", "logit_bias")),
    case("logit_bias-key-float", {"logit_bias": {5.5: 1.0}}, ("ValueError", "logit_bias")),
    case("logit_bias-value-nan", {"logit_bias": {5: NAN}}, ("ValueError", "NaN")),
    case("logit_bias-value-str", {"logit_bias": {5: "x"}}, ("TypeError", "logit_bias")),
    case("logit_bias-value-none", {"logit_bias": {5: None}}, ("TypeError", "logit_bias")),
    case("logit_bias-list", {"logit_bias": [[5, 1.0]]}, ("TypeError", "logit_bias")),
    case("logit_bias-str", {"logit_bias": "5:1"}, ("TypeError", "logit_bias")),
]

CALLABLES = [
    case("logits_processor-not-callable", {"logits_processor": 5}, ("TypeError", "logits_processor")),
    case("stopping_criteria-not-callable", {"stopping_criteria": "stop"}, ("TypeError", "stopping_criteria")),
    case("logits_processor-returns-none", {"logits_processor": scenarios.Ref("processor_returning_none")},
         ("ValueError", "n_vocab")),
    case("logits_processor-wrong-shape", {"logits_processor": scenarios.Ref("processor_with_the_wrong_shape")},
         ("ValueError",)),
    case("logits_processor-raises", {"logits_processor": scenarios.Ref("processor_that_raises")},
         ("RuntimeError", "a processor bug")),
    case("stopping_criteria-raises", {"stopping_criteria": scenarios.Ref("criteria_that_raises")},
         ("RuntimeError", "a stopping-criteria bug")),
]

PROMPTS = [
    case("prompt-int", {}, ("TypeError", "prompt"), prompt=5),
    case("prompt-none", {}, ("TypeError", "prompt"), prompt=None),
    case("prompt-float", {}, ("TypeError", "prompt"), prompt=1.5),
    case("prompt-dict", {}, ("TypeError", "prompt"), prompt={"text": "Hello"}),
    case("prompt-empty-list", {}, ("ValueError", "empty"), prompt=[]),
    case("prompt-list-of-empty-list", {}, ("ValueError", "empty"), prompt=[[]]),
    case("prompt-token-floats", {}, ("TypeError", "prompt"), prompt=[1.5, 2.5]),
    case("prompt-mixed-ints-and-str", {}, ("TypeError", "prompt"), prompt=[1, "a"]),
    case("prompt-token-out-of-range", {}, ("ValueError", "out of range"), prompt=[1, 10**6]),
    case("prompt-token-negative", {}, ("ValueError", "out of range"), prompt=[1, -1]),
    case("prompt-token-2^64", {}, ("ValueError", "out of range"), prompt=[2**64]),
    case("prompt-token-lists-one-bad", {}, ("ValueError", "out of range"), prompt=[[1, 2], [1, 32000]]),
    case("prompt-over-n_ctx", {}, ("ContextOverflowError", "context window"), prompt="word " * 200),
    case("prompt-tokens-over-n_ctx", {}, ("ContextOverflowError", "context window"), prompt=[1] + [450] * 200),
    case("prompt-lone-surrogate", {}, ("ValueError", "surrogate"), prompt="bad \ud800 text"),
    case("suffix-without-fim-tokens", {"suffix": "tail"}, ("ValueError", "FIM")),
    case("suffix-int", {"suffix": 5}, ("TypeError", "suffix")),
]

GRAMMARS = [
    case("grammar-syntax-error", {"grammar": 'root ::= "open'}, ("GrammarError", "grammar")),
    case("grammar-undefined-rule", {"grammar": "root ::= other"}, ("GrammarError", "other")),
    case("grammar-no-root", {"grammar": 'start ::= "a"'}, ("GrammarError", "root")),
    case("grammar-left-recursion", {"grammar": 'root ::= root "a" | "b"'}, ("GrammarError", "recursion")),
    case("grammar-indirect-left-recursion", {"grammar": 'root ::= a "x"\na ::= root "y" | "z"'},
         ("GrammarError", "recursion")),
    case("grammar-left-recursion-cycle", {"grammar": "root ::= x\nx ::= y\ny ::= root"}, ("GrammarError", "recursion")),
    case("grammar-whitespace", {"grammar": "   \n"}, ("GrammarError",)),
    case("grammar-huge-repetition", {"grammar": 'root ::= "a"{99999999}'}, ("GrammarError", "repetition")),
    case("grammar-repetition-past-int", {"grammar": 'root ::= "a"{1,99999999999999999999}'}, ("GrammarError",)),
    case("grammar-bad-escape", {"grammar": 'root ::= "\\q"'}, ("GrammarError",)),
    case("grammar-bad-hex-escape", {"grammar": 'root ::= "\\xZZ"'}, ("GrammarError",)),
    case("grammar-unclosed-class", {"grammar": "root ::= [a-z"}, ("GrammarError",)),
    case("grammar-deep-nesting", {"grammar": "root ::= " + "(" * 20000 + '"a"' + ")" * 20000},
         ("GrammarError", "nest")),
    case("grammar-repetition-max-below-min", {"grammar": 'root ::= "a"{5,2}'}, ("GrammarError", "maximum below")),
    case("grammar-int", {"grammar": 5}, ("GrammarError",)),
    case("grammar-matches-nothing", {"grammar": "root ::= [z-a]", "temperature": 0}, ("GrammarError", "no next token")),
    case("grammar-nul-byte", {"grammar": 'root ::= "a\x00b"'}, ("GrammarError",)),
]

# Values that look odd but have a documented meaning (llama-cpp-python's).
ACCEPTED = [
    case("max_tokens-0-means-up-to-n_ctx", {"max_tokens": 0, "logit_bias": {2: -INF}}, None, prompt="word " * 100),
    case("max_tokens-negative-means-up-to-n_ctx", {"max_tokens": -1}, None),
    case("max_tokens-huge-stops-at-n_ctx", {"max_tokens": 10**12, "logit_bias": {2: -INF}}, None,
         prompt="word " * 100),
    case("temperature-negative-samples-unscaled", {"temperature": -1.0}, None),
    case("top_k-0-disables", {"top_k": 0}, None),
    case("top_k-negative-disables", {"top_k": -5}, None),
    case("repeat_last_n-minus-1-means-n_ctx", {"repeat_last_n": -1, "repeat_penalty": 1.1}, None),
    case("dry_penalty_last_n-minus-1-means-n_ctx", {"dry_multiplier": 0.8, "dry_penalty_last_n": -1}, None),
    case("seed-beyond-32-bits", {"seed": 2**70}, None),
    case("logit_bias-inf-bans", {"logit_bias": {5: -INF, "6": INF}}, None),
    case("logprobs-more-than-the-vocabulary", {"logprobs": 10**6}, None),
    case("prompt-invalid-utf8-bytes", {}, None, prompt=b"\xff\xfe\x80 bytes"),
    case("prompt-nul-character", {}, None, prompt="a\x00b"),
    case("prompt-empty-string-is-bos", {}, None, prompt=""),
    case("stop-many-strings", {"stop": [f"s{i}" for i in range(1000)]}, None),
    case("grammar-empty-string-is-none", {"grammar": ""}, None),  # as llama-cpp-python's server reads it
    case("grammar-nested-1000-deep", {"grammar": "root ::= " + "(" * 1000 + '"a"' + ")" * 1000}, None),
]


@pytest.mark.parametrize("prompt, kwargs, expected",
                         SAMPLING + COUNTS + STOPS + LOGIT_BIAS + CALLABLES + PROMPTS + GRAMMARS + ACCEPTED)
def test_create_completion_argument(chat_model, prompt, kwargs, expected):
    out = run_case(scenarios.call, chat_model, {}, "create_completion", (prompt,), {"max_tokens": 2, **kwargs})
    if expected is None:
        assert expect_returns(out)["finish_reasons"][0] in ("length", "stop"), out.value
    else:
        expect_raises(out, *expected)


def test_max_tokens_past_the_context_ends_with_length(chat_model):
    out = run_case(scenarios.call, chat_model, {}, "create_completion", ("word " * 100,),
                   {"max_tokens": 10**6, "logit_bias": {2: -INF}})
    value = expect_returns(out)
    assert value["finish_reasons"] == ["length"] and value["usage"]["total_tokens"] <= 128


def test_a_stream_with_a_bad_argument_raises_at_the_call(chat_model):
    out = run_case(scenarios.call, chat_model, {}, "create_completion", ("Hello",), {"stream": True, "top_p": 7.0})
    expect_raises(out, "ValueError", "top_p")


@pytest.mark.parametrize("text, expected", [
    pytest.param("", ("GrammarError", "no rules"), id="empty"),
    pytest.param('root ::= "a"{3,1}', ("GrammarError", "maximum below"), id="repetition-max-below-min"),
    pytest.param("root ::= " + "(" * 5000 + '"a"' + ")" * 5000, ("GrammarError", "nest"), id="deep-nesting"),
    pytest.param("root ::= ", None, id="empty-rule-matches-empty-text"),
    pytest.param('root ::= "a" | ', None, id="empty-alternative"),
    # parsed only: left recursion shows when a completion uses it (grammar-left-recursion-cycle)
    pytest.param("root ::= x\nx ::= y\ny ::= root", None, id="recursion-cycle-is-caught-at-use"),
    pytest.param("root ::= [\\x]", ("GrammarError",), id="bad-class-escape"),
    pytest.param('root ::= "a"\nroot ::= "b"', None, id="redefined-rule-is-alternatives-or-error"),
    pytest.param(" ".join(f'r{i} ::= "x"' for i in range(20000)) + " root ::= r0", None, id="many-rules"),
    pytest.param(b'root ::= "a"', ("TypeError",), id="bytes"),
])
def test_llama_grammar_from_string(text, expected):
    out = run_case(scenarios.plain, "allama.LlamaGrammar.from_string", (text,))
    if expected is None:
        assert out.died is None, out.describe()
    else:
        expect_raises(out, *expected)
