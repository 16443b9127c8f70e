"""What the decode thread tracks for a submitted request and for each of its sequences."""

from __future__ import annotations

from allama.engine.loop_handle import LoopHandle
from allama.engine.media_positions import position_shifts
from allama.engine.output_sink import OutputSink
from allama.engine.request import Output, Request, TokenLogprob
from allama.engine.speculation import DRAFT_CAP_START
from allama.engine.text_stream import TextStream

# A sequence's phase.
FOLLOWING = 0   # waits for a leader sequence to evaluate a shared prefix, then copies its KV
PREFILLING = 1  # its prompt is being evaluated
GENERATING = 2  # samples one token per step (more when a draft model proposes)


class Sequence:
    """One choice of a request: its tokens, where its KV stands and what it has produced."""

    __slots__ = ("request", "index", "sink", "loop", "seq_id", "tokens", "n_prompt", "n_past", "phase",
                 "chain", "text", "generated", "leader", "target", "share_row", "followers", "logprobs",
                 "prompt_logprobs", "reused", "shifts", "drafted", "draft_cap", "suspect", "parked", "held", "ended")

    def __init__(self, request: Request, index: int, sink: OutputSink, loop: LoopHandle, seq_id: int) -> None:
        self.request = request
        self.index = index          # the choice's index in the request's outputs
        self.sink = sink
        self.loop = loop
        self.seq_id = seq_id        # the llama.cpp sequence id its KV lives under
        self.tokens: list[int] = list(request.prompt)
        self.n_prompt = len(request.prompt)
        self.n_past = 0             # tokens whose KV the sequence holds
        self.phase = PREFILLING
        self.chain = request.chains[index]
        self.text = TextStream(request.stop)
        self.generated = 0          # completion tokens counted in usage
        self.leader: Sequence | None = None  # FOLLOWING: whose KV it copies once that reaches `target`
        self.target = 0
        self.share_row = False      # a follower with the same prompt: the leader's last logits serve it
        self.followers: list[Sequence] = []
        self.logprobs: list[TokenLogprob] | None = [] if request.logprobs is not None else None
        # the first prompt token has no logprob: nothing precedes it
        self.prompt_logprobs: list[TokenLogprob | None] | None = [None] if request.prompt_logprobs else None
        self.reused = 0             # prompt tokens whose KV came from elsewhere
        self.shifts = position_shifts(request) if request.media else None
        self.drafted = False  # KV holds draft tokens beyond n_past (while a speculation is verified)
        self.draft_cap = DRAFT_CAP_START  # most proposed tokens to decode next step (adapts to acceptance)
        self.suspect = False  # in a batch that llama.cpp failed: decoded alone until it passes
        self.parked = False   # preempted for want of KV cells: recomputed once another sequence ends
        self.held: list[Output] = []  # outputs not yet posted to a reader that awaits the whole result
        self.ended = False    # finished, cancelled or failed: it gets no more outputs


class Submission:
    """A submitted request, where its outputs go, and its sequences once admitted."""

    __slots__ = ("request", "sink", "loop", "sequences", "finished", "order")

    def __init__(self, request: Request, sink: OutputSink, loop: LoopHandle, order: int) -> None:
        self.request = request
        self.sink = sink
        self.loop = loop
        self.sequences: list[Sequence] = []
        self.finished = 0
        self.order = order  # arrival: breaks ties between equal priorities

    def __lt__(self, other: Submission) -> bool:
        return (-self.request.priority, self.order) < (-other.request.priority, other.order)
