"""Turns sampled tokens into what a caller sees: text deltas that never hold a partly matched
stop string, logprobs, finish reasons and usage."""

from __future__ import annotations

from typing import Any

import numpy as np

from allama import _native
from allama.engine.request import Output, TokenLogprob
from allama.engine.sequence import Sequence, Submission
from allama.logprobs import log_softmax

# Tokens before a new one that a custom tokenizer is given to detokenize it: enough for a
# leading space and for a character split over several tokens, and O(1) per token.
DETOKENIZE_CONTEXT = 64


class OutputProcessor:
    """The decode thread's output side: one call per sampled token, one per finished sequence."""

    def __init__(self, ctx: _native.Context, vocab: _native.Vocab, n_ctx: int, tokenizer: Any = None) -> None:
        self.ctx = ctx
        self.vocab = vocab
        self.n_ctx = n_ctx            # the window one request may use
        self.tokenizer = tokenizer    # a BaseLlamaTokenizer; None: the model's vocabulary
        # looked up once per generated token: a set and a cache instead of two native calls
        self._eog = frozenset(vocab.eog_tokens)
        self._pieces: dict[int, bytes] = {}

    def accept(self, seq: Sequence, row: int, token: int) -> tuple[Output, str | None]:
        """Appends a sampled token (whose logits are batch row `row`) to the sequence and returns
        its output and finish reason ("stop", "length", or None to go on). Raises what a user
        callback (tokenizer, stopping criteria) raised: that request fails."""
        request = seq.request
        self.append(seq, token)
        logprob = None
        if seq.logprobs is not None:
            logprob = token_logprob(self.ctx.logits(row), token, request.logprobs or 0)
            seq.logprobs.append(logprob)
        if token in self._eog and not request.ignore_eos:
            # As llama-cpp-python: the end-of-generation token is neither text nor a completion token.
            seq.generated -= 1
            return Output(seq.index, [], ""), "stop"
        text = self._text(seq, token)
        finish = None
        if seq.text.stopped:
            finish = "stop"
        elif request.max_tokens is not None and seq.generated >= request.max_tokens:
            finish = "length"
        elif len(seq.tokens) >= self.n_ctx:
            finish = "length"
        elif request.stopping_criteria is not None:
            ids = np.asarray(seq.tokens, dtype=np.intc)
            if request.stopping_criteria(ids, self.ctx.logits(row)):
                finish = "stop"
        return Output(seq.index, [token], text, logprobs=[logprob] if logprob is not None else None), finish

    def can_defer(self, seq: Sequence, token: int) -> bool:
        """Whether the token's text may wait until the next step's decode runs: the sequence
        goes on whatever that text holds (no end of generation, token limit or full window),
        and nothing needs this step's logits for it (logprobs, stopping criteria)."""
        request = seq.request
        return (seq.logprobs is None and request.stopping_criteria is None
                and (token not in self._eog or request.ignore_eos)
                and (request.max_tokens is None or seq.generated + 1 < request.max_tokens)
                and len(seq.tokens) + 1 < self.n_ctx)

    @staticmethod
    def append(seq: Sequence, token: int) -> None:
        """The sequence holds the token; accept() and deferred_output() say what it means."""
        seq.tokens.append(token)
        seq.generated += 1

    def deferred_output(self, seq: Sequence, token: int) -> tuple[Output, str | None]:
        """The output of the sequence's last token, which append() added and can_defer() let
        wait: its text, and "stop" if that completes a stop string. Raises what a custom
        tokenizer raised."""
        text = self._text(seq, token)
        return Output(seq.index, [token], text), "stop" if seq.text.stopped else None

    def _text(self, seq: Sequence, token: int) -> str:
        """The text the sequence's last token (`token`) adds to its stream."""
        if self.tokenizer is None:
            piece = self._pieces.get(token)
            if piece is None:
                piece = self._pieces[token] = self.vocab.token_to_piece(token)
            return seq.text.feed(piece)
        context = [t for t in seq.tokens[-DETOKENIZE_CONTEXT - 1:-1] if t >= 0]  # no media ids
        return seq.text.feed(bytes(self.tokenizer.detokenize([token], prev_tokens=context)))

    def final(self, seq: Sequence, submission: Submission | None, last: Output | None,
              finish_reason: str | None, error: BaseException | None, state: Any) -> Output:
        """The sequence's last output: the held-back text, the finish reason or error, and the
        request's usage when this was its last sequence to end."""
        out = last or Output(seq.index, [], "")
        if error is not None:
            out.error = error
            return out
        if not seq.text.stopped:
            out.text += seq.text.flush()
        out.finish_reason = finish_reason or "stop"
        if seq.prompt_logprobs is not None:
            out.prompt_logprobs = seq.prompt_logprobs
        out.state = state
        if submission is not None and submission.finished == len(submission.sequences):
            out.usage = {
                "prompt_tokens": len(seq.request.prompt),
                "completion_tokens": sum(s.generated for s in submission.sequences),
                "cached_tokens": submission.sequences[0].reused if submission.sequences else 0,
            }
        return out

    def score_prompt(self, seq: Sequence, first: int, pos0: int) -> None:
        """Logprobs of the prompt tokens that follow the rows decoded this step (batch rows from
        `first`, prompt positions from `pos0`)."""
        top = seq.request.logprobs or 0
        for k in range(seq.n_past - pos0):
            following = pos0 + k + 1
            if following >= seq.n_prompt:
                break
            seq.prompt_logprobs.append(token_logprob(self.ctx.logits(first + k), seq.tokens[following], top))


def token_logprob(logits: np.ndarray, token: int, top: int) -> TokenLogprob:
    """The token's log-probability under the logits, with the `top` most likely alternatives."""
    logprobs = log_softmax(logits)
    top_ids = np.argpartition(-logprobs, top)[:top] if 0 < top < len(logprobs) else np.arange(0)
    top_ids = top_ids[np.argsort(-logprobs[top_ids])]
    return TokenLogprob(token, float(logprobs[token]), {int(t): float(logprobs[t]) for t in top_ids})
