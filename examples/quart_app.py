"""A chat service on Quart: one allama model, chat completions streamed as Server-Sent Events.

Run it::

    pip install allama quart
    python examples/quart_app.py --model model.gguf --port 8080
    curl -N localhost:8080/chat -H 'Content-Type: application/json' \\
        -d '{"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 64}'

Each request body is create_chat_completion's keyword arguments as JSON; the reply is one
`data: <chat.completion.chunk>` event per chunk, then `data: [DONE]`. Concurrent requests
share the model through allama's continuous batching. Hypercorn (Quart's own server)
serves it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import hypercorn
import hypercorn.asyncio
from quart import Quart, Response, request

from allama import AsyncStream, Llama


def create_app(llm: Llama) -> Quart:
    """The service around an already-loaded model; closing the model stays with the caller."""
    app = Quart(__name__)

    @app.post("/chat")
    async def chat() -> Response | tuple[dict[str, str], int]:
        """create_chat_completion's keyword arguments in, Server-Sent Events out."""
        try:
            body = await request.get_json()
            stream = await llm.create_chat_completion(**{**body, "stream": True})
        except (TypeError, ValueError) as error:
            return {"error": str(error)}, 400
        response = Response(server_sent_events(stream), mimetype="text/event-stream",
                            headers={"Cache-Control": "no-cache"})
        response.timeout = None  # a long generation may outlast Quart's RESPONSE_TIMEOUT (60 s)
        return response

    return app


async def server_sent_events(stream: AsyncStream[dict[str, Any]]) -> AsyncIterator[str]:
    """The chunks as `data:` events, then `data: [DONE]`.

    When the client disconnects, Quart cancels or closes this generator, and leaving
    `async with` cancels the request in the engine.
    """
    async with stream:
        async for chunk in stream:
            yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


async def serve(model_path: str, host: str, port: int) -> None:
    """Loads the model off the event loop, serves until SIGINT or SIGTERM, then closes the model."""
    config = hypercorn.Config()
    config.bind = [f"{host}:{port}"]
    async with await Llama.load(model_path, n_parallel=4) as llm:
        await hypercorn.asyncio.serve(create_app(llm), config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--model", default=os.environ.get("ALLAMA_MODEL"),
                        help="GGUF file (default: $ALLAMA_MODEL)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    if not args.model:
        parser.error("give --model or set ALLAMA_MODEL")
    asyncio.run(serve(args.model, args.host, args.port))


if __name__ == "__main__":
    main()
