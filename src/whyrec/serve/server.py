"""`whyrec serve`: validate the folder, load the model once, open the cache, run uvicorn.

uvicorn bounds neither how long a client may take to send a request (a body shorter than its
Content-Length held the connection forever) nor how many connections stay open (its
`limit_concurrency` answers 503 only once a request's headers have arrived, so stalled clients
still pile up). `bounded_protocol` adds both to uvicorn's h11 protocol; `errors.BodyLimit` times
the body. Every refusal is the same `{"detail": ...}` JSON as the app's own 4xx.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path

from whyrec.config import GenerationConfig
from whyrec.utils import WhyrecError, cache_dir


def default_cache_path() -> Path:
    # Outside the artifact folder (which must stay exactly as trained); rows are keyed by model
    # revision, so one file serves every model on the machine.
    return cache_dir() / "serve" / "explanations.sqlite"


def build_app(run: str, device: str = "auto", generation: GenerationConfig | None = None,
              cache: str | None = "auto", settings=None):
    """The FastAPI app for `run`, ready for uvicorn or FastAPI's TestClient."""
    try:
        import fastapi  # noqa: F401
    except ImportError:
        raise WhyrecError("`whyrec serve` needs the serve extra: pip install 'whyrec[serve]'") from None
    from whyrec.serve.app import create_app
    from whyrec.serve.cache import ExplanationCache
    from whyrec.serve.load import load_served
    from whyrec.serve.settings import ServeSettings, one_batch
    from whyrec.serve.validate import check_artifact

    settings = one_batch(settings or ServeSettings(), generation)
    if settings.continuous is None:  # the served default; create_app alone keeps the micro-batcher
        settings = replace(settings, continuous=True)
    folder = check_artifact(run)
    gen = replace(generation or GenerationConfig(), batch_size=settings.max_batch)
    model = load_served(folder, device=device, generation=gen)
    store = ExplanationCache(None if cache in (None, "none") else default_cache_path() if cache == "auto" else cache)
    return create_app(model, store, settings)


def bounded_protocol(settings):
    """uvicorn's h11 protocol with a deadline on each request's headers, a connection cap and JSON 400s."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from whyrec.serve.errors import json_error_bytes

    class BoundedH11Protocol(H11Protocol):
        _read_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > settings.max_connections:
                self._refused = True  # answered on its first bytes, so the request is read and the close is clean
            self._arm()  # a client that connects and sends nothing is closed too

        def data_received(self, data: bytes) -> None:
            if getattr(self, "_refused", False):
                return self._answer_and_close(503, f"the server has {settings.max_connections} connections "
                                                   "open, its limit (max_connections); retry shortly")
            if self._read_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the first bytes of the next request on a kept-alive connection
            super().data_received(data)

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers are in: its body is BodyLimit's to time
                self._disarm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:  # h11 refused the request line or a header
            self._answer_and_close(400, "malformed HTTP request: bad request line or header (e.g. a Content-Length "
                                        "that is not a number, or headers over 16 KB); nothing was processed")

        def _arm(self) -> None:
            self._disarm()
            self._read_timer = self.loop.call_later(settings.read_timeout_s, self._read_timed_out)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _read_timed_out(self) -> None:
            self._read_timer = None
            if self.cycle is None or self.cycle.response_complete:  # still waiting for headers
                self._answer_and_close(408, f"request headers not received within {settings.read_timeout_s:g} s "
                                            "(read_timeout_s); send the whole request at once")

        def _answer_and_close(self, status: int, detail: str) -> None:
            self._disarm()
            if self.transport.is_closing():
                return
            headers, body = json_error_bytes(status, detail)
            head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
            head += [name + b": " + value for name, value in headers]
            self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
            self.transport.close()

    return BoundedH11Protocol


def uvicorn_server(app, settings=None):
    """A uvicorn.Server for `app` with the limits of `settings`; `.run(sockets=[listen(...)])` serves."""
    import uvicorn

    from whyrec.serve.settings import ServeSettings

    settings = settings or ServeSettings()
    config = uvicorn.Config(app, http=bounded_protocol(settings), ws="none", log_level="warning",
                            timeout_keep_alive=settings.keep_alive_s, timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def listen(host: str, port: int) -> socket.socket:
    """A bound socket for host:port, or a one-line error (bad port, unknown host, port in use)."""
    from whyrec.serve.settings import check_port

    check_port(port)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise WhyrecError(f"--host {host!r} is not an address of this machine ({e}); "
                          "use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        fix = {errno.EADDRINUSE: "pick another --port or stop what is using it",
               errno.EACCES: "ports below 1024 need root: pick a --port above 1023",
               errno.EADDRNOTAVAIL: "--host is not an address of this machine: use 127.0.0.1 or 0.0.0.0"}
        raise WhyrecError(f"cannot listen on {host}:{port}: {e.strerror or e}; "
                          f"{fix.get(e.errno, 'check --host and --port')}") from None
    return sock


def run_server(run: str, host: str, port: int, **kwargs) -> None:
    from whyrec.serve.load import check_servable
    from whyrec.serve.settings import ServeSettings, one_batch

    # Before listening and loading: --max_batch and --generation.batch_size at odds fail at once,
    # and so does --generation.candidates.
    check_servable(kwargs.get("generation"))
    kwargs["settings"] = one_batch(kwargs.get("settings") or ServeSettings(), kwargs.get("generation"))
    sock = listen(host, port)  # before the model loads: a taken port fails in a second, not after a minute
    port = sock.getsockname()[1]  # the one the system picked for --port 0
    try:
        app = build_app(run, **kwargs)
        model = app.state.model
        info = model.info()
        print(f"whyrec serve: {info['method']} on {info['backbone']} ({info['n_users']} users, "
              f"{info['n_items']} items, revision {model.revision}); cache {app.state.cache.path or 'in memory'}; "
              f"page at http://{host}:{port}/ , API at /docs", flush=True)
        uvicorn_server(app, kwargs.get("settings")).run(sockets=[sock])
    finally:
        sock.close()
