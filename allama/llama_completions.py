"""Llama.create_completion's work: the arguments checked, the prompts tokenized, one engine
Request per prompt (a sampler chain per choice), tied to the session turn and the prompt cache,
then run by a CompletionJob (allama.completion) that shapes what comes back."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from allama import _native, arguments
from allama.completion import CompletionJob
from allama.engine import Request
from allama.errors import ContextOverflowError
from allama.gbnf import checked_gbnf
from allama.llama_prompts import LONG_TEXT_BYTES, media_prompt_tokens, prompt_texts, prompt_token_lists
from allama.logits_processing import as_logits_processor, as_stopping_criteria
from allama.session_turn import current_turn_slot
from allama.state import LlamaState
from allama.stream import AsyncStream

if TYPE_CHECKING:
    from allama.llama import Llama

LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp's "random seed"


async def create_completion(llm: Llama, args: Mapping[str, Any]) -> Any:
    """The response of create_completion called with `args` (its arguments by parameter name),
    or with stream=True an AsyncStream of its chunks."""
    engine = llm._engine()
    arguments.check_sampling(args)  # the sampling values, by their parameter names
    n = arguments.whole("n", args["n"], 1)
    if n > llm._n_parallel:  # before a sampler chain is built for each choice
        raise ValueError(f"n={n} is more than n_parallel={llm._n_parallel}")
    for name, low in (("max_tokens", None), ("logprobs", 0), ("max_prompt_tokens", 0)):
        if args[name] is not None:
            arguments.whole(name, args[name], low, None)
    arguments.whole("priority", args["priority"], None, None)
    timeout = args["timeout"]
    if timeout is not None and arguments.real("timeout", timeout) <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout}")
    arguments.seed(args["seed"])
    prompt, suffix, media = args["prompt"], args["suffix"], args["media"]
    echo, logprobs = args["echo"], args["logprobs"]
    arguments.optional_str("suffix", suffix)
    arguments.optional_mapping("stream_options", args["stream_options"])
    logits_processor = as_logits_processor(args["logits_processor"])  # a callable, or a list of them
    stopping_criteria = as_stopping_criteria(args["stopping_criteria"])
    stops = arguments.stop_strings(args["stop"])
    if media:
        prompts = [media_prompt_tokens(llm, prompt, media, echo, suffix)]
    elif isinstance(prompt, (str, bytes)) and len(prompt) >= LONG_TEXT_BYTES:  # off the event loop
        prompts = await anyio.to_thread.run_sync(prompt_token_lists, llm, prompt, suffix)
    else:
        prompts = prompt_token_lists(llm, prompt, suffix)
    for tokens in prompts:
        if len(tokens) >= llm._n_ctx:
            raise ContextOverflowError(f"Requested tokens ({len(tokens)}) exceed context window of {llm._n_ctx}")
        if args["max_prompt_tokens"] is not None and len(tokens) > args["max_prompt_tokens"]:
            raise ContextOverflowError(
                f"the prompt has {len(tokens)} tokens; at most {args['max_prompt_tokens']} are allowed")
    params = sampler_params(llm, args)
    base_seed = llm.seed if args["seed"] is None else args["seed"]
    adapters = llm._lora.for_request(args["lora"])
    max_tokens = args["max_tokens"]
    requests = []
    for tokens in prompts:
        chains = []
        for i in range(n):
            params.seed = base_seed if base_seed == LLAMA_DEFAULT_SEED else (base_seed + i) & 0xFFFFFFFF
            chains.append(_native.SamplerChain(llm._model, params))
        requests.append(Request(
            prompt=tokens, chains=chains,
            max_tokens=max_tokens if max_tokens is not None and max_tokens > 0 else None,
            stop=stops, logprobs=logprobs, prompt_logprobs=echo and logprobs is not None,
            ignore_eos=args["ignore_eos"], priority=args["priority"], timeout=timeout,
            logits_processor=logits_processor, stopping_criteria=stopping_criteria, media=tuple(media),
            lora=adapters))
    await _bind_requests(llm, requests)
    model_name = args["model"] if args["model"] is not None else llm.model_path
    # the prompts' text serves echo and the logprobs' text offsets only (a detokenization of each)
    texts = prompt_texts(llm, prompt, prompts) if (echo or logprobs is not None) and not media else [""] * len(prompts)
    job = CompletionJob(llm, engine, requests, n, model_name, echo, logprobs, suffix, prompts, texts,
                        partial(_keep_state, llm))
    job.submit(args["stream"])
    if args["stream"]:
        stream_options = args["stream_options"]
        include_usage = bool(stream_options and stream_options.get("include_usage"))
        return AsyncStream(job.chunks(include_usage), on_abandon=job.cancel)
    return await job.result()


def sampler_params(llm: Llama, args: Mapping[str, Any]) -> _native.SamplerParams:
    """The sampler chain's parameters from create_completion's arguments (seed aside)."""
    def last_n(value: int) -> int:  # a penalty window: -1 is the context size (llama.cpp's meaning)
        return llm._n_ctx if value == -1 else value

    params = _native.SamplerParams()
    for name in ("temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty", "frequency_penalty",
                 "presence_penalty", "mirostat_mode", "mirostat_tau", "mirostat_eta", "xtc_probability",
                 "xtc_threshold", "top_n_sigma", "dry_multiplier", "dry_base", "dry_allowed_length"):
        setattr(params, name, args[name])
    repeat_last_n = args["repeat_last_n"]
    params.penalty_last_n = last_n(llm.last_n_tokens_size if repeat_last_n is None else repeat_last_n)
    params.dry_penalty_last_n = last_n(args["dry_penalty_last_n"])
    if args["dry_sequence_breakers"] is not None:
        params.dry_sequence_breakers = arguments.string_list("dry_sequence_breakers", args["dry_sequence_breakers"])
    if args["logit_bias"] is not None:
        params.logit_bias = arguments.logit_bias(args["logit_bias"])
    if args["grammar"] is not None:
        params.grammar = checked_gbnf(str(args["grammar"]))  # GBNF text or a LlamaGrammar
    return params


async def _bind_requests(llm: Llama, requests: list[Request]) -> None:
    """Ties the requests to the session whose turn this is and to the prompt cache."""
    slot = current_turn_slot()
    if slot is not None:
        if len(requests) != 1 or requests[0].n != 1:
            raise ValueError("a session turn continues one prompt with n=1")
        requests[0].session = slot
    cache = llm.cache
    if cache is None:
        return
    engine = llm._engine()
    for request in requests:
        if request.media or request.prompt_logprobs or request.lora:
            # placeholder ids of media are not worth keeping; echo needs every prompt row;
            # states do not record the LoRA adapters their KV was computed with
            continue
        request.keep_state = True
        state = await cache.lookup(request.prompt, longer_than=engine.held_prefix(request.prompt))
        if state is not None and state.scope == "sequence":
            request.restore = state


async def _keep_state(llm: Llama, state: LlamaState) -> None:
    """Stores a finished sequence's state in the prompt cache (when one is set)."""
    cache = llm.cache
    if cache is not None:
        state.seed = llm.seed
        await cache.store(state.tokens, state)
