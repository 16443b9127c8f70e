"""OutputPost: a step's outputs reach each event loop in one post, each sink in one push."""

from __future__ import annotations

from allama.engine.loop_handle import LoopHandle
from allama.engine.output_post import OutputPost
from allama.engine.request import Output


class RecordingSink:
    def __init__(self) -> None:
        self.pushes: list[tuple[list[str], bool]] = []

    def push(self, outputs: list[Output], final: bool = False) -> None:
        self.pushes.append(([o.text for o in outputs], final))


def test_each_loop_gets_one_post_and_each_sink_one_push():
    posts: dict[str, list] = {"a": [], "b": []}
    loops = {key: LoopHandle(key, lambda fn, *args, key=key: posts[key].append((fn, args))) for key in posts}
    sinks = [RecordingSink() for _ in range(3)]
    post = OutputPost()
    post.add(sinks[0], loops["a"], Output(0, [1], "x"))
    post.add(sinks[1], loops["a"], Output(0, [2], "y"))
    post.add(sinks[0], loops["a"], Output(0, [3], "z", finish_reason="stop"))
    post.add(sinks[2], loops["b"], Output(0, [4], "w"))
    assert post.flush() == []
    assert len(posts["a"]) == 1 and len(posts["b"]) == 1
    for fn, args in posts["a"] + posts["b"]:
        fn(*args)  # what the event loop runs
    assert sinks[0].pushes == [(["x", "z"], True)]
    assert sinks[1].pushes == [(["y"], False)]
    assert sinks[2].pushes == [(["w"], False)]
    assert post.flush() == []  # nothing is posted twice


def test_the_sinks_of_a_closed_loop_are_handed_back():
    def closed(fn, *args):
        raise RuntimeError("Event loop is closed")

    sink = RecordingSink()
    post = OutputPost()
    post.add(sink, LoopHandle("gone", closed), Output(0, [1], "x"))
    assert post.flush() == [sink]
    assert sink.pushes == []
