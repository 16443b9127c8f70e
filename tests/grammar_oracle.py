"""Whether llama.cpp's grammar engine accepts a text: an oracle for our GBNF that does
not share our converter's code. Each byte is offered as the tiny SPM model's byte token;
the text is accepted when the grammar lets every byte through and then allows the end."""

from __future__ import annotations

import numpy as np

from allama import _native

from .scripted import byte_tokens


def grammar_accepts(llm, grammar: str, text: str) -> bool:
    params = _native.SamplerParams()
    params.grammar = grammar
    params.temperature = 0.0
    chain = _native.SamplerChain(llm._model, params)
    n = llm.n_vocab()
    for token in byte_tokens(llm, text.encode()) + [llm.token_eos()]:
        logits = np.full(n, -1e9, dtype=np.float32)
        logits[token] = 0.0
        if chain.sample_logits(logits) != token:  # the grammar ruled it out
            return False
    return True
