"""--limit-concurrency N: N requests run at once; past that the server answers 503 itself."""

import concurrent.futures
import re

import httpx


def test_requests_past_the_limit_get_503(start_server):
    srv = start_server("tests.apps.router:app", "--limit-concurrency", "2")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = [
            pool.submit(httpx.get, f"{srv.url}/slow", params={"delay": 2, "tag": f"held-{i}"}, timeout=20)
            for i in range(2)
        ]
        for i in range(2):
            srv.wait_for_line(f"SLOW-STARTED held-{i}")
        refused = httpx.get(f"{srv.url}/", timeout=10)
        assert refused.status_code == 503
        assert refused.text == "Service Unavailable"
        assert refused.headers["connection"] == "close"
        assert all(future.result().status_code == 200 for future in slow)
    srv.wait_for_line(re.compile(r"^WARNING: +Exceeded concurrency limit\.$"))
    assert httpx.get(f"{srv.url}/", timeout=10).status_code == 200  # capacity is back


def test_without_the_option_there_is_no_limit(start_server):
    srv = start_server("tests.apps.router:app")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(httpx.get, f"{srv.url}/slow", params={"delay": 0.5}, timeout=20) for _ in range(8)]
        assert [future.result().status_code for future in futures] == [200] * 8
