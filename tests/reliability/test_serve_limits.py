"""`whyrec serve` bounds what a slow or hostile client can hold (issue 17 §6), on a real uvicorn.

Raw sockets against the real server on 127.0.0.1: a body shorter than its Content-Length, headers
that never end, a silent connection, a flood of stalled connections, a non-numeric
Content-Length. Limits are 1 s and 20 connections here so the whole file takes seconds.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'whyrec[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'whyrec[serve]')")
from cli_contract import whyrec_inprocess  # noqa: E402

from whyrec.config import GenerationConfig  # noqa: E402
from whyrec.serve.settings import ServeSettings  # noqa: E402

READ_TIMEOUT = 1.0
MAX_CONNECTIONS = 20
SETTINGS = ServeSettings(read_timeout_s=READ_TIMEOUT, max_connections=MAX_CONNECTIONS, keep_alive_s=1.0)


def _serve_tiny():
    import serve_tiny  # tests/serve_tiny.py: builds and serves a tiny run

    return serve_tiny


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return _serve_tiny().tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def address(run):
    """host, port of the tiny XRec run served by uvicorn in a thread, with the test limits."""
    from whyrec.serve.app import create_app
    from whyrec.serve.cache import ExplanationCache
    from whyrec.serve.load import load_served
    from whyrec.serve.server import uvicorn_server

    model = load_served(run / "explainer", device="cpu", generation=GenerationConfig(max_new_tokens=4))
    server = uvicorn_server(create_app(model, ExplanationCache(None), SETTINGS), SETTINGS)
    sock = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield sock.getsockname()[:2]
    server.should_exit = True
    thread.join(10)


def _connect(address, payload: bytes = b"") -> socket.socket:
    conn = socket.create_connection(address, timeout=10)
    if payload:
        conn.sendall(payload)
    return conn


def _read_until_closed(conn: socket.socket, limit: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started, data = time.monotonic(), b""
    conn.settimeout(limit)
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def _status_and_json(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers.get("content-type", "").startswith("application/json"), raw[:300]
    return int(lines[0].split()[1]), json.loads(body)


def _get(address, path: str) -> tuple[int, dict]:
    conn = _connect(address, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    raw, _ = _read_until_closed(conn)
    conn.close()
    return _status_and_json(raw)


def test_body_shorter_than_content_length_gets_408_and_is_closed(address):
    conn = _connect(address, b"POST /explain HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100\r\n\r\n" + b'{"user": 1')
    raw, waited = _read_until_closed(conn)
    conn.close()
    status, body = _status_and_json(raw)
    assert status == 408 and "got 10 of 100 bytes" in body["detail"], body
    assert READ_TIMEOUT * 0.8 < waited < READ_TIMEOUT + 3, f"closed after {waited:.1f} s"


def test_headers_that_never_end_get_408_and_are_closed(address):
    conn = _connect(address, b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: 1\r\n")
    raw, waited = _read_until_closed(conn)
    conn.close()
    status, body = _status_and_json(raw)
    assert status == 408 and "headers not received within 1 s" in body["detail"], body
    assert waited < READ_TIMEOUT + 3, f"closed after {waited:.1f} s"


def test_dripped_headers_do_not_extend_the_deadline(address):
    conn = _connect(address, b"GET /health HTTP/1.1\r\n")
    started = time.monotonic()
    try:
        for _ in range(20):  # one byte every 0.2 s would keep a per-read timeout alive forever
            time.sleep(0.2)
            conn.sendall(b"X")
    except (BrokenPipeError, ConnectionResetError):
        pass
    raw, _ = _read_until_closed(conn)
    conn.close()
    assert time.monotonic() - started < READ_TIMEOUT + 1.5
    assert raw == b"" or _status_and_json(raw)[0] == 408


def test_stalled_chunked_body_gets_408(address):
    conn = _connect(address, b"POST /explain HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\n{\"use\r\n")
    raw, waited = _read_until_closed(conn)
    conn.close()
    status, body = _status_and_json(raw)
    assert status == 408 and "got 5 bytes" in body["detail"], body
    assert waited < READ_TIMEOUT + 3


def test_a_silent_connection_is_closed(address):
    conn = _connect(address)
    _, waited = _read_until_closed(conn)
    conn.close()
    assert waited < READ_TIMEOUT + 3, f"closed after {waited:.1f} s"


def test_stalled_flood_is_refused_promptly_then_drains(address):
    stalled = [_connect(address, b"POST /explain HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{")
               for _ in range(3 * MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # let the server accept them all
        started = time.monotonic()
        status, body = _get(address, "/health")  # beyond the limit: refused at once, not queued
        assert time.monotonic() - started < READ_TIMEOUT * 0.8
        assert status == 503 and "max_connections" in body["detail"], body
        for conn in stalled:  # every one is closed within the bound (408 or refused)
            _, waited = _read_until_closed(conn)
            assert waited < READ_TIMEOUT + 3
    finally:
        for conn in stalled:
            conn.close()
    time.sleep(0.2)
    assert _get(address, "/health") == (200, {"status": "ok"})


def test_non_numeric_content_length_gets_a_json_400(address):
    # h11 refuses the header before any app code runs; the protocol answers in the API's JSON shape.
    conn = _connect(address, b"POST /explain HTTP/1.1\r\nHost: t\r\nContent-Length: ten\r\n\r\n{}")
    raw, waited = _read_until_closed(conn)
    conn.close()
    status, body = _status_and_json(raw)
    assert status == 400 and "Content-Length" in body["detail"], body
    assert waited < READ_TIMEOUT


def test_normal_requests_still_work_with_keep_alive(address):
    conn = _connect(address)
    for _ in range(2):  # two requests on one connection: the read deadline is re-armed, not spent
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(READ_TIMEOUT * 0.6)
        assert b'{"status":"ok"}' in conn.recv(65536)
    conn.close()


def test_info_shows_folder_names_not_absolute_paths(address, run):
    status, info = _get(address, "/info")
    assert status == 200 and info["method"] == "xrec"
    assert info["folder"] == "explainer"
    text = json.dumps(info)
    assert str(run) not in text and str(Path.home()) not in text
    assert "/tmp/" not in text and '"/' not in text, text


@pytest.mark.parametrize("args, needle", [
    (["--port", "-1"], "--port must be a TCP port from 1 to 65535 (or 0 for any free port), got -1"),
    (["--port", "70000"], "--port must be a TCP port"),
    (["--max_batch", "0"], "--max_batch must be a positive integer"),
    (["--timeout_s", "-5"], "--timeout_s must be a positive number of seconds"),
    (["--max_body_bytes", "0"], "--max_body_bytes must be a positive integer"),
])
def test_bad_serve_limits_are_one_line_errors(args, needle, tmp_path, capsys):
    whyrec_inprocess(["serve", "--run", tmp_path, *args], capsys).assert_one_line_error(needle)


def test_port_in_use_is_a_one_line_error(tmp_path, capsys):
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        result = whyrec_inprocess(["serve", "--run", tmp_path, "--port", str(port)], capsys)
    finally:
        taken.close()
    result.assert_one_line_error(f"cannot listen on 127.0.0.1:{port}", "pick another --port")


@pytest.mark.parametrize("host, needle", [("192.0.2.1", "not an address of this machine"),
                                          ("no such host", "--host 'no such host' is not an address")])
def test_bad_host_is_a_one_line_error(host, needle, tmp_path, capsys):
    whyrec_inprocess(["serve", "--run", tmp_path, "--host", host, "--port", "8123"], capsys).assert_one_line_error(needle)
