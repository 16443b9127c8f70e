"""TextStream: UTF-8 safe deltas and stop strings that never leak."""

from __future__ import annotations

import codecs
import random

from allama.engine.text_stream import TextStream


def feed_all(stream: TextStream, pieces: list[bytes]) -> list[str]:
    return [stream.feed(p) for p in pieces]


def test_a_character_split_across_pieces_waits_for_its_last_byte():
    stream = TextStream()
    deltas = feed_all(stream, [b"caf", b"\xc3", b"\xa9!"])
    assert deltas == ["caf", "", "\xe9!"]


def test_stop_string_split_across_pieces_is_never_emitted():
    stream = TextStream(["STOP"])
    deltas = feed_all(stream, [b"abc S", b"T", b"O", b"P tail"])
    assert "".join(deltas) == "abc "
    assert stream.stopped
    assert all("S" not in d for d in deltas)


def test_held_text_that_does_not_complete_a_stop_is_released():
    stream = TextStream(["STOP"])
    deltas = feed_all(stream, [b"ab ST", b"ART"])
    assert deltas == ["ab ", "START"]
    assert not stream.stopped


def test_the_earliest_of_several_stops_wins():
    stream = TextStream(["world", "lo w"])
    assert stream.feed(b"hello world") == "hel"
    assert stream.stopped


def test_flush_returns_what_was_held_back():
    stream = TextStream(["</end>"])
    assert stream.feed(b"text </e") == "text "
    assert stream.flush() == "</e"


def test_invalid_bytes_are_dropped_as_llama_cpp_python_drops_them():
    stream = TextStream()
    assert stream.feed(b"a\xffb") == "ab"
    # a character cut short by the end of the sequence is dropped too, not replaced
    assert stream.feed(b"c\xe6\x97") == "c" and stream.flush() == ""


def test_random_pieces_emit_exactly_the_text_before_the_first_stop():
    rng = random.Random(3)
    for _ in range(500):
        stops = ["".join(rng.choice("abc\n") for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 3))]
        text = "".join(rng.choice("abcdxyz \n") for _ in range(rng.randint(0, 30)))
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 6))))
        pieces = [text[i:j].encode() for i, j in zip([0, *cuts], [*cuts, len(text)])]
        stream = TextStream(stops)
        out = ""
        for piece in pieces:  # as the engine feeds a sequence: until a stop string is found
            out += stream.feed(piece)
            if stream.stopped:
                break
        first = min((i for i in (text.find(s) for s in stops) if i != -1), default=-1)
        if first == -1:
            assert not stream.stopped and out + stream.flush() == text
        else:
            assert stream.stopped and out == text[:first]


def test_random_bytes_decode_as_codecs_incremental_decoder_ignoring_errors():
    # the stream decodes with utf_8_decode and keeps an unfinished character's bytes itself:
    # deltas and the flushed end must be what codecs' incremental decoder gives
    rng = random.Random(11)
    alphabet = [b"a", b" ", b"\xc3", b"\xa9", b"\xe2", b"\x82", b"\xac", b"\xf0", b"\x9f", b"\x98", b"\x80",
                b"\xff", b"\xc0", b"\xed", b"\xa0"]
    for _ in range(2000):
        pieces = [b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(1, 8))]
        reference = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        stream = TextStream()
        assert [stream.feed(p) for p in pieces] == [reference.decode(p) for p in pieces], pieces
        assert stream.flush() == reference.decode(b"", final=True), pieces
