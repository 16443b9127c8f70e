"""A chat service on aiohttp: one allama model, chat completions streamed as Server-Sent Events.

Run it::

    pip install allama aiohttp
    python examples/aiohttp_app.py --model model.gguf --port 8080
    curl -N localhost:8080/chat -H 'Content-Type: application/json' \\
        -d '{"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 64}'

Each request body is create_chat_completion's keyword arguments as JSON; the reply is one
`data: <chat.completion.chunk>` event per chunk, then `data: [DONE]`. Concurrent requests
share the model through allama's continuous batching.
"""

from __future__ import annotations

import argparse
import json
import os

from aiohttp import web

from allama import Llama

LLM = web.AppKey("llm", Llama)


def create_app(llm: Llama) -> web.Application:
    """The service around an already-loaded model; closing the model stays with the caller."""
    app = web.Application()
    app[LLM] = llm
    app.router.add_post("/chat", chat)
    return app


async def chat(request: web.Request) -> web.StreamResponse:
    """POST /chat: create_chat_completion's keyword arguments in, Server-Sent Events out."""
    try:
        body = await request.json()
        stream = await request.app[LLM].create_chat_completion(**{**body, "stream": True})
    except (TypeError, ValueError) as error:
        return web.json_response({"error": str(error)}, status=400)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    try:
        async with stream:  # leaving it early (the client went away) cancels the request in the engine
            await response.prepare(request)
            async for chunk in stream:
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
    except ConnectionResetError:
        pass  # aiohttp's way of saying the client disconnected; nothing is left to send
    return response


async def load_app(model_path: str) -> web.Application:
    """Loads the model off the event loop at startup and closes it at shutdown."""
    llm = await Llama.load(model_path, n_parallel=4)
    app = create_app(llm)
    app.on_cleanup.append(close_model)
    return app


async def close_model(app: web.Application) -> None:
    await app[LLM].aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--model", default=os.environ.get("ALLAMA_MODEL"),
                        help="GGUF file (default: $ALLAMA_MODEL)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    if not args.model:
        parser.error("give --model or set ALLAMA_MODEL")
    web.run_app(load_app(args.model), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
