"""Every bad request gets a 4xx with a one-line `detail` message; nothing reaches a 500.

FastAPI's own 422 body is a list of dicts that may echo the (huge, binary) input back; here
it becomes one readable line plus the locations. Bodies are capped before parsing, so a
100 MB POST costs nothing but the bytes read up to the cap.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from whyrec.serve.batcher import QueueFull
from whyrec.serve.model import Unsupported
from whyrec.utils import WhyrecError


def _message(errors: list[dict]) -> str:
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"request body is not valid JSON ({first.get('msg')} at character {first['loc'][-1]})"
    if tuple(first.get("loc", ())) == ("body",):  # the body as a whole, not one field
        return "request body must be a JSON object, e.g. {\"user\": \"196\", \"item\": \"242\"}"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": _message(errors), "errors": errors[:10]}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        # Starlette's own one-word details ("Not Found") say nothing about what to do instead.
        detail = {404: f"no route {request.method} {request.url.path[:100]}; the API is listed at /openapi.json",
                  405: f"{request.method} is not allowed on {request.url.path[:100]}",
                  400: "request body could not be parsed (not UTF-8, or JSON nested too deeply)"}
        generic = exc.detail in ("Not Found", "Method Not Allowed", "There was an error parsing the body")
        message = detail.get(exc.status_code, str(exc.detail)) if generic else str(exc.detail)
        return JSONResponse({"detail": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(WhyrecError)
    async def whyrec_error(_: Request, exc: WhyrecError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(Unsupported)
    async def unsupported(_: Request, exc: Unsupported):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(QueueFull)
    async def queue_full(_: Request, exc: QueueFull):
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(asyncio.TimeoutError)
    async def timeout(_: Request, exc: asyncio.TimeoutError):
        return JSONResponse({"detail": "the explanation took longer than the server's per-request timeout; "
                                       "it is still being generated and cached, retry shortly"}, status_code=504)


class BodyLimit:
    """ASGI middleware: read the whole body within `read_timeout_s` and at most `max_bytes`, before the app.

    Too large: 413. Not all there in time (a client that declared more bytes than it sends would
    otherwise hold the connection open forever; uvicorn has no body timeout): 408. Both close the
    connection, so the rest of the body is never read.
    """

    def __init__(self, app, max_bytes: int, read_timeout_s: float = 10.0):
        self.app, self.max_bytes, self.read_timeout_s = app, max_bytes, read_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.strip().isdigit():  # h11 refuses these before us; httptools may not
            return await _refuse(send, 400, f"Content-Length {declared[:20].decode('latin-1')!r} is not a number of bytes")
        if declared is not None and int(declared) > self.max_bytes:
            return await _refuse(send, 413, f"request body over {self.max_bytes} bytes")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout_s
        chunks, size, more = [], 0, True
        while more:  # chunked uploads declare no length: count what actually arrives
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                expected = f"of {int(declared)} " if declared is not None else ""
                return await _refuse(send, 408, f"request body not received within {self.read_timeout_s:g} s "
                                                f"(got {size} {expected}bytes); send the whole body at once")
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await _refuse(send, 413, f"request body over {self.max_bytes} bytes")
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def json_error_bytes(status: int, detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of a `{"detail": ...}` error that closes the connection (the shape of every 4xx)."""
    data = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
               (b"connection", b"close")]
    return headers, data


async def _refuse(send, status: int, detail: str) -> None:
    headers, data = json_error_bytes(status, detail)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
