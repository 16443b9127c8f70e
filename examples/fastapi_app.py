"""An OpenAI-style chat endpoint in your own FastAPI app, on one allama model.

Run it under uvicorn::

    pip install allama fastapi uvicorn
    ALLAMA_MODEL=model.gguf uvicorn fastapi_app:app --app-dir examples --port 8080
    # or: python examples/fastapi_app.py --model model.gguf --port 8080
    curl -N localhost:8080/v1/chat/completions -H 'Content-Type: application/json' \\
        -d '{"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 64, "stream": true}'

The model loads off the event loop in the app's lifespan and closes at shutdown. A request
takes OpenAI's main chat fields; with `"stream": true` the reply is Server-Sent Events, one
`data: <chat.completion.chunk>` per chunk, then `data: [DONE]`. Concurrent requests share
the model through allama's continuous batching. (For the whole OpenAI API, mount
`allama.server.create_app(...)` instead: docs/server.md.)
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from allama import AsyncStream, Llama


class ChatRequest(BaseModel):
    """The chat completion fields this app accepts (OpenAI's names)."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(default=256, ge=1)
    temperature: float = Field(default=0.8, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False


def create_app(model_path: str | None = None, *, llm: Llama | None = None, n_threads: int | None = None) -> FastAPI:
    """The app: it loads `model_path` at startup and closes it at shutdown, or serves an
    already-loaded `llm`, whose closing stays with the caller."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if llm is not None:
            app.state.llm = llm
            yield
            return
        if not model_path:
            raise RuntimeError("no model: set ALLAMA_MODEL (or pass --model)")
        async with await Llama.load(model_path, n_parallel=4, n_threads=n_threads) as loaded:
            app.state.llm = loaded
            yield

    app = FastAPI(title="chat", lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, invalid_request)
    app.post("/v1/chat/completions")(chat_completions)
    return app


async def chat_completions(body: ChatRequest, request: Request) -> Any:
    """A chat completion: the whole response, or with `stream` its chunks as Server-Sent Events."""
    llm: Llama = request.app.state.llm
    fields = body.model_dump(exclude={"stream"}, exclude_none=True)
    try:
        if not body.stream:
            return await llm.create_chat_completion(**fields)
        stream = await llm.create_chat_completion(**fields, stream=True)
    except ValueError as error:  # e.g. a prompt longer than the context: the client's mistake
        raise HTTPException(status_code=400, detail=str(error)) from error
    return StreamingResponse(server_sent_events(stream), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def server_sent_events(stream: AsyncStream[dict[str, Any]]) -> AsyncIterator[str]:
    """The chunks as `data:` events, then `data: [DONE]`.

    When the client disconnects, Starlette cancels this generator, and leaving `async with`
    cancels the request in the engine: its sequence is freed at the next decode step.
    """
    async with stream:
        async for chunk in stream:
            yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


async def invalid_request(request: Request, error: Exception) -> JSONResponse:
    """Errors in OpenAI's body (`{"error": {"message", "type"}}`), so OpenAI clients read them."""
    status = error.status_code if isinstance(error, HTTPException) else 400
    message = str(error.detail) if isinstance(error, HTTPException) else str(error.errors())
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=status)


def _threads(value: str | None) -> int | None:
    return int(value) if value else None


# `uvicorn fastapi_app:app` serves this one: the model named by $ALLAMA_MODEL
app = create_app(os.environ.get("ALLAMA_MODEL"), n_threads=_threads(os.environ.get("ALLAMA_N_THREADS")))


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--model", default=os.environ.get("ALLAMA_MODEL"), help="GGUF file (default: $ALLAMA_MODEL)")
    parser.add_argument("--n-threads", type=int, default=None, help="CPU threads (default: llama.cpp's)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    if not args.model:
        parser.error("give --model or set ALLAMA_MODEL")
    uvicorn.run(create_app(args.model, n_threads=args.n_threads), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
