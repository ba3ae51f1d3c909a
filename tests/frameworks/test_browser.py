"""A real browser: headless Chromium (the system's, driven by Playwright; no browser download) loads a Starlette page
over HTTPS with HTTP/2. The page's handler sends a 103 Early Hints naming /hinted.css and waits for the browser to
request it before sending the HTML: Chromium must act on the hint. The page's script opens a WebSocket to the same
origin and writes the reply into the DOM.

Found with Chromium 156 (Debian): it acts on the 103 of an origin whose certificate it was told to ignore
(``--ignore-certificate-errors``) for a same-origin ``rel=preload``, and chooses RFC 8441 for the WebSocket; over
HTTP/1.1 (``--http h11 --early-hints-http1``) it receives the 103 but fetches the stylesheet only after the page.

Skipped only when no Chromium binary is found (``FERROCORN_CHROMIUM``, ``chromium``, ``chromium-browser``,
``google-chrome``); Debian's ``apt-get install chromium`` provides one."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import trustme
from playwright.sync_api import sync_playwright

from tests.support.server import ServerProcess

APP = "tests.apps.browser_app:app"


def chromium_binary() -> str | None:
    candidates = [os.environ.get("FERROCORN_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]
    for name in candidates:
        if name and (path := shutil.which(name)):
            return path
    return None


CHROMIUM = chromium_binary()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary found (apt-get install chromium, or set FERROCORN_CHROMIUM)"
)


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    root = tmp_path_factory.mktemp("browser-pki")
    (root / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    (root / "key.pem").write_bytes(cert.private_key_pem.bytes())
    srv = ServerProcess.ferrocorn(APP, "--ssl-certfile", str(root / "cert.pem"), "--ssl-keyfile", str(root / "key.pem"))
    srv.wait_ready()
    yield srv
    srv.close()


def test_chromium_renders_follows_the_early_hint_and_round_trips_a_websocket(https_server):
    origin = f"https://localhost:{https_server.port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # The certificate is the test CA's; --ignore-certificate-errors accepts it (Chromium still treats the
            # page as a secure context and acts on the 103's preload).
            args=["--ignore-certificate-errors", "--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.goto(origin + "/", wait_until="load", timeout=30_000)
            page.wait_for_function("document.getElementById('ws').textContent !== 'pending'", timeout=15_000)
            ws_text = page.text_content("#ws")
            protocol = page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            state = json.loads(page.evaluate("fetch('/state').then(r => r.text())"))
        finally:
            browser.close()
    # The page rendered, with the hinted stylesheet applied.
    assert background == "rgb(1, 2, 3)"
    # HTTP/2, seen by the browser and by the server.
    assert protocol == "h2"
    assert state["page_http_version"] == "2"
    # The 103 was offered and Chromium fetched the hinted stylesheet before the final response was sent.
    assert state["hint_offered"] is True
    assert state["css_before_final"] is True, state
    assert state["css_requested_at"] < state["final_sent_at"]
    # The WebSocket round-tripped (over RFC 8441 if Chromium chose it: ws_http_version "2").
    assert ws_text == "pong:hello"
    assert state["ws_http_version"] in ("1.1", "2")
