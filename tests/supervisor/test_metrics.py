"""--metrics-bind: Prometheus text for the whole server, checked with prometheus_client's parser after
known traffic, alone and with --workers (totals across workers, a killed worker's counts kept)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.support.server import ServerProcess, free_port

APP = "tests.apps.metrics_app:app"


class Scrape:
    """One scrape of /metrics, parsed."""

    def __init__(self, port: int) -> None:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        self.families = {family.name: family for family in text_string_to_metric_families(response.text)}
        self.samples = [sample for family in self.families.values() for sample in family.samples]

    def total(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels` (every worker's, summed)."""
        found = [s for s in self.samples if s.name == name and labels.items() <= s.labels.items()]
        assert found, f"no sample {name}{labels}"
        return sum(s.value for s in found)

    def workers(self) -> set[str]:
        return {s.labels["worker"] for s in self.samples if s.name == "ferrocorn_requests_total"}


def wait_for(port: int, condition, timeout: float = 10.0) -> Scrape:
    """Scrape until `condition(scrape)` holds (gauges settle after the clients close)."""
    deadline = time.monotonic() + timeout
    while True:
        scrape = Scrape(port)
        if condition(scrape):
            return scrape
        assert time.monotonic() < deadline, "\n".join(str(s) for s in scrape.samples if "open" in s.name)
        time.sleep(0.05)


def settled(scrape: Scrape) -> bool:
    return all(
        scrape.total(name) == 0
        for name in ("ferrocorn_requests_in_flight", "ferrocorn_connections_open", "ferrocorn_websockets_open")
    )


def send_known_traffic(srv: ServerProcess) -> None:
    """7 x 200 and 3 x 404 and 2 POSTs over one HTTP/1.1 connection, 1 GET over h2c, 1 WebSocket."""
    with httpx.Client(base_url=srv.url, trust_env=False, timeout=10) as client:
        for _ in range(7):
            assert client.get("/ok").text == "hello"
        for _ in range(3):
            assert client.get("/missing").status_code == 404
        assert client.post("/echo", content=b"x" * 1000).text == "1000"
        assert client.post("/echo", content=b"y" * 234).text == "234"
    with httpx.Client(base_url=srv.url, http1=False, http2=True, trust_env=False, timeout=10) as client:
        response = client.get("/ok")
        assert response.http_version == "HTTP/2" and response.text == "hello"
    with connect(f"ws://127.0.0.1:{srv.port}/ws") as websocket:
        websocket.send("ping")
        assert websocket.recv() == "ping"


def check_known_traffic(scrape: Scrape, before: Scrape) -> None:
    """What `send_known_traffic` adds (the readiness probe's connection came before)."""

    def total(name: str, **labels: str) -> float:
        return scrape.total(name, **labels) - before.total(name, **labels)

    # The WebSocket's handshake is a request answered 101.
    assert total("ferrocorn_requests_total", protocol="http/1.1", status_class="2xx") == 9
    assert total("ferrocorn_requests_total", protocol="http/1.1", status_class="4xx") == 3
    assert total("ferrocorn_requests_total", protocol="http/1.1", status_class="1xx") == 1
    assert total("ferrocorn_requests_total", protocol="h2", status_class="2xx") == 1
    assert total("ferrocorn_requests_total", status_class="5xx") == 0
    assert total("ferrocorn_requests_total") == 14
    assert total("ferrocorn_request_duration_seconds_count") == 14
    assert total("ferrocorn_request_duration_seconds_bucket", le="+Inf") == 14
    assert total("ferrocorn_request_duration_seconds_sum") > 0
    assert total("ferrocorn_request_body_bytes_total") == 1000 + 234
    assert total("ferrocorn_response_body_bytes_total") == 7 * 5 + 3 * 4 + 4 + 3 + 5
    assert total("ferrocorn_connections_total") == 3
    assert total("ferrocorn_websockets_total") == 1
    assert scrape.families["ferrocorn_request_duration_seconds"].type == "histogram"
    assert scrape.families["ferrocorn_requests_in_flight"].type == "gauge"


def test_single_process_counts_known_traffic(start_server):
    port = free_port()
    srv = start_server(APP, "--lifespan", "off", "--metrics-bind", f"127.0.0.1:{port}")
    assert srv.has_line(f"Metrics served on http://127.0.0.1:{port}/metrics")
    before = Scrape(port)
    assert before.total("ferrocorn_requests_total") == 0
    assert before.workers() == {"0"}
    send_known_traffic(srv)
    scrape = wait_for(port, settled)
    check_known_traffic(scrape, before)
    assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404


def test_gauges_count_what_is_open(start_server):
    port = free_port()
    srv = start_server(APP, "--lifespan", "off", "--metrics-bind", f"127.0.0.1:{port}")
    done = threading.Event()

    def slow() -> None:
        httpx.get(f"{srv.url}/slow", timeout=10)
        done.set()

    with connect(f"ws://127.0.0.1:{srv.port}/ws") as websocket:
        thread = threading.Thread(target=slow)
        thread.start()
        scrape = wait_for(port, lambda s: s.total("ferrocorn_requests_in_flight") == 1 or done.is_set())
        assert not done.is_set(), "the slow request ended before a scrape saw it"
        assert scrape.total("ferrocorn_websockets_open") == 1
        assert scrape.total("ferrocorn_connections_open") == 2
        websocket.send("bye")
        websocket.recv()
        thread.join()
    wait_for(port, settled)


def test_workers_are_summed_and_a_killed_worker_loses_no_count(start_server):
    port = free_port()
    srv = start_server(APP, "--lifespan", "off", "--workers", "2", "--metrics-bind", f"127.0.0.1:{port}")
    assert wait_for(port, lambda s: len(s.workers()) == 2).workers() == {"0", "1"}
    send_known_traffic(srv)
    # Fresh connections, so that both workers serve some.
    pids = {int(httpx.get(f"{srv.url}/pid", timeout=5).text) for _ in range(20)}
    scrape = wait_for(port, settled)
    assert scrape.total("ferrocorn_requests_total", protocol="http/1.1", status_class="2xx") == 9 + 20
    assert scrape.total("ferrocorn_request_body_bytes_total") == 1234
    assert scrape.total("ferrocorn_request_duration_seconds_count") == 14 + 20
    assert scrape.total("ferrocorn_worker_restarts_total") == 0

    victim = pids.pop()
    os.kill(victim, signal.SIGKILL)
    scrape = wait_for(port, lambda s: s.total("ferrocorn_worker_restarts_total", reason="crash") == 1)
    assert scrape.total("ferrocorn_worker_restarts_total") == 1
    # The dead worker's counts stay in the totals; the replacement continues its slot.
    assert scrape.total("ferrocorn_requests_total") == 14 + 20
    assert scrape.total("ferrocorn_response_body_bytes_total") >= 59
    assert scrape.workers() == {"0", "1"}
    served = 0
    deadline = time.monotonic() + 15
    while served < 10:
        assert time.monotonic() < deadline, srv.log_tail()
        try:
            if httpx.get(f"{srv.url}/ok", timeout=5).status_code == 200:
                served += 1
        except httpx.TransportError:
            pass  # the killed worker's connection
    scrape = wait_for(port, settled)
    assert scrape.total("ferrocorn_requests_total", protocol="http/1.1", status_class="2xx") == 9 + 20 + 10


def test_sighup_replacements_are_counted_and_keep_every_count(start_server):
    port = free_port()
    srv = start_server(APP, "--lifespan", "off", "--workers", "2", "--metrics-bind", f"127.0.0.1:{port}")
    wait_for(port, lambda s: len(s.workers()) == 2)
    for _ in range(6):
        assert httpx.get(f"{srv.url}/ok", timeout=5).status_code == 200
    mark = srv.mark()
    srv.send_signal(signal.SIGHUP)
    # Each new worker serves before the old one leaves, so the first takes a third slot; the second takes the
    # first old worker's slot if that one has finished draining by then (it continues its counts), else a fourth.
    scrape = wait_for(port, lambda s: s.total("ferrocorn_worker_restarts_total", reason="reload") == 2, timeout=30)
    assert scrape.total("ferrocorn_worker_restarts_total") == 2
    assert scrape.workers() in ({"0", "1", "2"}, {"0", "1", "2", "3"})
    assert scrape.total("ferrocorn_requests_total") == 6
    assert srv.lines_since(mark), "no log line after SIGHUP"
    for _ in range(4):
        assert httpx.get(f"{srv.url}/ok", timeout=5).status_code == 200
    scrape = wait_for(port, settled)
    assert scrape.total("ferrocorn_requests_total", status_class="2xx") == 10


def test_a_worker_recycled_by_max_requests_is_counted(start_server):
    port = free_port()
    args = ("--lifespan", "off", "--workers", "2", "--limit-max-requests", "3", "--metrics-bind", f"127.0.0.1:{port}")
    srv = start_server(APP, *args)
    sent = 0
    deadline = time.monotonic() + 20
    while Scrape(port).total("ferrocorn_worker_restarts_total", reason="max-requests") == 0:
        assert time.monotonic() < deadline, srv.log_tail()
        try:
            if httpx.get(f"{srv.url}/ok", timeout=5).status_code == 200:
                sent += 1
        except httpx.TransportError:
            pass  # a worker leaving
        time.sleep(0.05)
    scrape = wait_for(port, settled)
    assert scrape.total("ferrocorn_worker_restarts_total", reason="crash") == 0
    assert scrape.total("ferrocorn_requests_total", status_class="2xx") == sent


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_port_in_use_is_a_startup_failure(run_process, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        srv = ServerProcess.ferrocorn(
            APP, "--lifespan", "off", "--workers", workers, "--metrics-bind", f"127.0.0.1:{port}", wait=False
        )
        try:
            assert srv.wait(timeout=20) == 3
        finally:
            srv.close()
        errors = [line for line in srv.stderr_lines if line and "Cannot serve metrics on" in line]
        assert len(errors) == 1, srv.log_tail()
        assert f"127.0.0.1:{port}" in errors[0]
