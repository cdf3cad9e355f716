"""The served page end to end in headless Chromium (Debian's build, driven by Playwright).

A real `whyrec serve` process on the tiny model; the test searches a user, sees the
recommendations with their explanations loading, clicks one, and checks the "why" panel
shows exactly the explanation the API returns. The screenshot is kept in test-artifacts/.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from serve_tiny import tiny_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("WHYREC_TEST_ARTIFACTS", REPO / "test-artifacts"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    run = tiny_run(tmp_path_factory)
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    # max_wait_ms 800 with the micro-batcher (--continuous false): it holds the first explanation long
    # enough for the page's loading state to be observable, and merges the page's five parallel requests.
    cmd = [sys.executable, "-m", "whyrec.cli", "serve", "--run", str(run), "--port", str(port),
           "--cache", "none", "--continuous", "false", "--max_wait_ms", "800", "--generation.max_new_tokens", "8"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"whyrec serve exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                pytest.fail(f"whyrec serve not ready after 120 s: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no chromium at {CHROMIUM}: install Debian's package (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


def test_page_search_user_click_recommendation_shows_explanation(server, browser):
    import httpx

    user = httpx.get(server + "/users", params={"limit": 1}).json()["users"][0]["user"]
    page = browser.new_page(viewport={"width": 1366, "height": 800})  # a laptop screen
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("#model:has-text('tiny-random-llama')")
    page.fill("#user-search", user)
    page.click(f"#user-results .pick[data-user='{user}']")
    page.wait_for_selector("#recs li.rec >> nth=4")
    assert page.locator("#recs .explanation.loading").count() >= 1  # generating, shown as such
    assert page.locator("#history li").count() == int(page.text_content("#history-count")) > 0
    page.wait_for_function("document.querySelectorAll('#recs .explanation.loading').length === 0", timeout=60000)
    first = page.locator("#recs li.rec").first
    item = first.get_attribute("data-item")
    first.locator(".pick").click()
    page.wait_for_selector("#why-explanation:not(.loading):not(:empty)", timeout=60000)
    shown = page.text_content("#why-explanation")
    api = httpx.post(server + "/explain", json={"user": user, "item": item}, timeout=60).json()
    assert api["cached"] is True and shown == api["explanation"] != ""
    assert page.text_content("#why-title").startswith("Why ") and user in page.text_content("#why-title")
    assert page.text_content("#recs li.rec .explanation") == shown  # the same text under the item
    page.fill("#item-search", api["title"][:5])
    page.wait_for_selector(f"#item-results .pick[data-item='{item}']")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve_page.png"), full_page=True)
    assert (ARTIFACTS / "serve_page.png").stat().st_size > 10_000 and errors == []
    page.close()
