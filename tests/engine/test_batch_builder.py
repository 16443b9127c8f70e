"""BatchBuilder: what one step's batch holds (generating tokens first, draft proposals, prompt
chunks in what is left, media evaluated where a prefill stands), which rows are sampled, how
LoRA adapter sets take turns and how suspects of a failed decode go alone, on a recording
batch (the end-to-end outputs are in test_scheduler.py, test_lora.py and test_speculative.py)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from allama.engine.batch_builder import BatchBuilder
from allama.engine.request import MediaSpan, Request
from allama.engine.sequence import FOLLOWING, GENERATING, Sequence
from allama.engine.speculation import Speculator


class RecordingBatch:
    """The batch's rows as (token, position, sequence id, logits wanted)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, bool]] = []

    def clear(self) -> None:
        self.rows = []

    def add(self, token: int, pos: int, seq_id: int, output: bool = False) -> None:
        self.rows.append((token, pos, seq_id, output))

    def add_tokens(self, tokens: list[int], pos0: int, seq_id: int, output_last: bool = True) -> None:
        for k, token in enumerate(tokens):
            self.add(token, pos0 + k, seq_id, output_last and k == len(tokens) - 1)

    @property
    def n_tokens(self) -> int:
        return len(self.rows)


class AdapterContext:
    n_vocab = 100

    def __init__(self) -> None:
        self.adapter_sets: list[list] = []

    def set_lora_adapters(self, adapters: list) -> None:
        self.adapter_sets.append(adapters)


def builder(n_batch: int = 8, *, kv_unified: bool = True, draft_model=None) -> BatchBuilder:
    ctx = AdapterContext()
    counters: Counter = Counter()
    speculator = Speculator(ctx, None, 64, draft_model, counters)
    return BatchBuilder(ctx, RecordingBatch(), n_batch, kv_unified=kv_unified, speculator=speculator,
                        counters=counters)


def generating(seq_id: int, tokens: list[int], **fields) -> Sequence:
    seq = Sequence(Request(prompt=list(tokens), chains=[object()], **fields), 0, None, None, seq_id)
    seq.n_past, seq.phase = len(tokens) - 1, GENERATING
    return seq


def prefilling(seq_id: int, prompt: list[int], n_past: int = 0, **fields) -> Sequence:
    seq = Sequence(Request(prompt=list(prompt), chains=[object()], **fields), 0, None, None, seq_id)
    seq.n_past = n_past
    return seq


def test_generating_tokens_go_first_and_prompt_chunks_fill_what_is_left():
    batches = builder(n_batch=8)
    gen, long_prompt = generating(0, [1, 2, 3]), prefilling(1, list(range(10, 20)))
    step = batches.build([long_prompt, gen])
    assert batches.batch.rows[0] == (3, 2, 0, True)
    assert batches.batch.rows[1:] == [(10 + k, k, 1, False) for k in range(7)]  # a chunk: no logits yet
    assert step.rows == [(gen, 0)] and step.included == [(gen, 1), (long_prompt, 7)]
    long_prompt.n_past = 7
    step = batches.build([long_prompt])
    assert batches.batch.rows == [(17, 7, 1, False), (18, 8, 1, False), (19, 9, 1, True)]
    assert step.rows == [(long_prompt, 2)]  # the chunk that completes the prompt is sampled


def test_prompt_logprobs_ask_for_every_prompt_rows_logits():
    batches = builder()
    seq = prefilling(0, [1, 2, 3], prompt_logprobs=True)
    step = batches.build([seq])
    assert [row[3] for row in batches.batch.rows] == [True, True, True]
    assert step.prompt_rows == [(seq, 0, 0)] and step.rows == [(seq, 2)]


def test_with_a_stream_per_sequence_generating_rows_go_in_id_order():
    sequences = [generating(3, [1, 2]), generating(1, [4, 5]), generating(2, [6, 7])]
    batches = builder(kv_unified=False)
    batches.build(sequences)
    assert [row[2] for row in batches.batch.rows] == [1, 2, 3]
    batches = builder(kv_unified=True)
    batches.build(sequences)
    assert [row[2] for row in batches.batch.rows] == [3, 1, 2]


def test_parked_and_following_sequences_sit_out():
    parked, following, ready = generating(0, [1, 2]), prefilling(1, [3, 4]), prefilling(2, [5, 6])
    parked.parked = True
    following.phase = FOLLOWING
    batches = builder()
    step = batches.build([parked, following, ready])
    assert step.included == [(ready, 2)]


def test_adapter_sets_take_turns_and_the_context_switches_only_when_the_set_changes():
    sql, chat = (("sql-adapter", 1.0),), (("chat-adapter", 0.5),)
    a, b = generating(0, [1, 2], lora=sql), generating(1, [3, 4], lora=chat)
    batches = builder()
    chosen = [[seq for seq, _ in batches.build([a, b]).included] for _ in range(3)]
    assert chosen == [[a], [b], [a]]
    assert batches.ctx.adapter_sets == [list(sql), list(chat), list(sql)]
    batches.build([a])
    batches.build([a])
    assert len(batches.ctx.adapter_sets) == 3  # sql is applied already


def test_after_a_failed_decode_each_suspect_is_decoded_alone_until_none_is_left():
    first, second, bystander = generating(0, [1, 2]), generating(1, [3, 4]), generating(2, [5, 6])
    first.suspect = second.suspect = True
    batches = builder()
    batches.isolating = True
    assert batches.build([first, second, bystander]).included == [(first, 1)]
    first.suspect = False  # its decode passed
    assert batches.build([first, second, bystander]).included == [(second, 1)]
    second.suspect = False
    assert len(batches.build([first, second, bystander]).included) == 3 and not batches.isolating


def test_a_draft_proposal_goes_in_after_the_sequences_token_with_logits_on_every_row():
    batches = builder(draft_model=lambda ids: [7, 8])
    seq = generating(0, [1, 2, 3])
    step = batches.build([seq])
    assert batches.batch.rows == [(3, 2, 0, True), (7, 3, 0, True), (8, 4, 0, True)]
    assert step.speculating == [(seq, 0, [7, 8])] and step.rows == [] and step.included == [(seq, 1)]


def test_proposals_together_take_at_most_half_the_batch():
    batches = builder(n_batch=8, draft_model=lambda ids: [7, 8, 9, 10, 11])
    sequences = [generating(i, [1, 2]) for i in range(3)]
    step = batches.build(sequences)
    assert sum(len(proposed) for _, _, proposed in step.speculating) == 4
    assert batches.batch.n_tokens == 3 + 4


class MediaContext:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[int, int]] = []

    def eval_media_chunk(self, ctx, chunks, index, pos, seq_id, n_batch) -> None:
        if self.error is not None:
            raise self.error
        self.calls.append((pos, seq_id))


def with_image(seq_id: int, context: MediaContext) -> Sequence:
    span = MediaSpan(2, 3, context, [SimpleNamespace(n_pos=3)], 0)
    return prefilling(seq_id, [1, 2, -9, -9, -9, 3, 4], media=[span])


def test_text_before_a_medium_goes_in_alone_then_the_medium_is_evaluated_in_its_own_call():
    media = MediaContext()
    batches = builder()
    seq = with_image(4, media)
    step = batches.build([seq])
    assert batches.batch.rows == [(1, 0, 4, False), (2, 1, 4, False)] and step.included == [(seq, 2)]
    seq.n_past = 2
    step = batches.build([seq])
    assert media.calls == [(2, 4)] and batches.counters["prompt_tokens_evaluated"] == 3
    assert batches.batch.rows == [(3, 5, 4, False), (4, 6, 4, True)] and step.rows == [(seq, 1)]


def test_a_medium_that_fails_to_evaluate_is_reported_and_the_others_go_on():
    error = RuntimeError("bad image")
    seq, other = with_image(0, MediaContext(error)), prefilling(1, [5, 6])
    seq.n_past = 2
    step = builder().build([seq, other])
    assert step.failed == [(seq, error)] and step.included == [(other, 2)]
