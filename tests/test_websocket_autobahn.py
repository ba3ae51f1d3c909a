"""The Autobahn fuzzing-client cases (through kosoku) against an echo app.

Sections 1-7 and 10 run in full. Of 12 and 13 (permessage-deflate), three message sizes of every
subcategory run (16 bytes, 256 bytes, 8 KiB auto-fragmented): all the parameter combinations, in
seconds instead of minutes. Section 9 (performance) is the benchmark's job.
"""

from __future__ import annotations

import asyncio
import collections

import pytest

kosoku = pytest.importorskip("kosoku")

ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}
DEFLATE_CASES = [f"12.{j}.{i}" for j in range(1, 6) for i in (1, 3, 11)] + [
    f"13.{j}.{i}" for j in range(1, 8) for i in (1, 3, 11)
]


def run_cases(url: str, cases: list[str]) -> list:
    async def run() -> list:
        try:
            return await kosoku.run_fuzzingclient(url, cases=cases, concurrency=4)
        except kosoku.FailureError as exc:
            return list(exc.results)

    return asyncio.run(run())


def check(results: list, expected_count: int) -> None:
    verdicts = collections.Counter((r.behavior.value, r.behavior_close.value) for r in results)
    failures = [
        f"{r.case_id}: {r.behavior.value}/{r.behavior_close.value} {r.result} {r.result_close}"
        for r in results
        if r.behavior.value not in ACCEPTED or r.behavior_close.value not in ACCEPTED
    ]
    assert not failures, "\n".join(failures)
    assert len(results) == expected_count, verdicts


@pytest.mark.timeout(180)
def test_autobahn_core_sections(start_server):
    srv = start_server("tests.apps.ws_apps:app", "--no-access-log")
    results = run_cases(f"ws://{srv.host}:{srv.port}/echo", ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"])
    check(results, 247)


@pytest.mark.timeout(180)
def test_autobahn_permessage_deflate(start_server):
    srv = start_server("tests.apps.ws_apps:app", "--no-access-log")
    results = run_cases(f"ws://{srv.host}:{srv.port}/echo", DEFLATE_CASES)
    check(results, len(DEFLATE_CASES))
