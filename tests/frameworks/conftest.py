"""Fixtures of the framework tests: the file the apps serve and the transport each test runs over."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.served import FILE_SIZE, TRANSPORTS


@pytest.fixture(scope="module")
def file_to_serve(tmp_path_factory) -> Path:
    """FILE_SIZE bytes of a pattern that shows any byte out of place."""
    path = tmp_path_factory.mktemp("served") / "payload.bin"
    block = bytes(range(256)) * 4096
    with path.open("wb") as out:
        for i in range(FILE_SIZE // len(block)):
            out.write(bytes([i % 251]) + block[1:])
    return path


@pytest.fixture(params=TRANSPORTS)
def transport(request) -> str:
    return request.param
