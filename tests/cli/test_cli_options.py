"""Command-line options, each observed from outside: on the wire, in the log or in the exit code."""

import re

import httpx
import pytest

APP = "tests.apps.options_app:app"


def test_header_adds_default_response_headers(start_server):
    srv = start_server(APP, "--header", "X-Custom:yes", "--header", "Server:custom-server")
    response = httpx.get(f"{srv.url}/")
    assert response.headers["x-custom"] == "yes"
    assert response.headers.get_list("server") == ["custom-server"]


def test_factory(start_server):
    srv = start_server("tests.apps.options_app:create_app", "--factory")
    assert httpx.get(f"{srv.url}/").status_code == 200
    assert not srv.has_line("ASGI app factory detected")


def test_factory_without_the_flag_is_detected_with_a_warning(start_server):
    srv = start_server("tests.apps.options_app:create_app")
    assert httpx.get(f"{srv.url}/").status_code == 200
    assert srv.has_line(re.compile(r"^WARNING: +ASGI app factory detected"))


def test_interface_asgi2(start_server):
    srv = start_server("tests.apps.options_app:Asgi2App", "--interface", "asgi2", "--lifespan", "off")
    assert httpx.get(f"{srv.url}/").text == "asgi2:http"


def test_asgi2_is_detected_automatically(start_server):
    srv = start_server("tests.apps.options_app:Asgi2App", "--lifespan", "off")
    assert httpx.get(f"{srv.url}/").text == "asgi2:http"


def test_env_file(tmp_path, start_server):
    env_file = tmp_path / "app.env"
    env_file.write_text("FERROCORN_TEST_ENV_VALUE=from-env-file\n")
    srv = start_server(APP, "--env-file", str(env_file))
    assert httpx.get(f"{srv.url}/").json()["env"] == "from-env-file"
    assert srv.has_line(f"Loading environment from '{env_file}'")


def test_app_dir(tmp_path, start_server):
    (tmp_path / "elsewhere_app.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] == 'http':\n"
        "        await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "        await send({'type': 'http.response.body', 'body': b'from app-dir'})\n"
    )
    srv = start_server("elsewhere_app:app", "--app-dir", str(tmp_path))
    assert httpx.get(f"{srv.url}/").text == "from app-dir"


def test_reset_contextvars(start_server):
    assert httpx.get(f"{start_server(APP).url}/").json()["marker"] == "set-at-import"
    fresh = start_server(APP, "--reset-contextvars")
    assert httpx.get(f"{fresh.url}/").json()["marker"] == "unset"


def test_gc_freeze_freezes_what_startup_left_alive(start_server):
    """By default everything alive before the first request is frozen (gc.get_objects() no longer lists
    it); --no-gc-freeze leaves the collector as the app had it."""
    frozen = httpx.get(f"{start_server(APP).url}/").json()
    assert frozen["gc_freeze_count"] > 1000
    assert frozen["imported_cycle_tracked"] is False
    unfrozen = httpx.get(f"{start_server(APP, '--no-gc-freeze').url}/").json()
    assert unfrozen["gc_freeze_count"] == 0
    assert unfrozen["imported_cycle_tracked"] is True


def test_limit_max_requests_ends_the_process(start_server):
    srv = start_server(APP, "--limit-max-requests", "3")
    for _ in range(3):
        assert httpx.get(f"{srv.url}/").status_code == 200
    assert srv.wait(timeout=10) == 0
    assert srv.has_line(re.compile(r"^WARNING: +Maximum request limit of 3 exceeded\. Terminating process\.$"))


def test_h11_max_incomplete_event_size_limits_the_request_head(start_server):
    srv = start_server(APP, "--h11-max-incomplete-event-size", "4096")
    assert httpx.get(f"{srv.url}/", headers={"X-Small": "a" * 1000}).status_code == 200
    assert httpx.get(f"{srv.url}/", headers={"X-Big": "a" * 8000}).status_code == 431


def test_use_colors_and_no_use_colors(start_server):
    coloured = start_server(APP, "--use-colors", wait=False)  # the bold address hides the port from the helper
    line = coloured.wait_for_line(re.compile(r"Started server process"))
    assert "\x1b[32mINFO\x1b[0m:" in line
    plain = start_server(APP, "--no-use-colors")
    assert plain.has_line(re.compile(r"^INFO: +Started server process \[\d+\]$"))
    assert not any("\x1b[" in line for line in plain.stderr_lines)


def test_http_implementation_names_map_to_the_rust_core(start_server):
    srv = start_server(APP, "--http", "httptools")
    assert httpx.get(f"{srv.url}/").status_code == 200
    assert srv.has_line("--http httptools: served by ferrocorn's Rust HTTP implementation (HTTP/1.1 only).")


def test_backlog_reaches_listen(start_server):
    import shutil
    import subprocess

    import pytest

    if not shutil.which("ss"):
        pytest.skip("ss (iproute2) is not installed")
    srv = start_server(APP, "--backlog", "77")
    listing = subprocess.run(["ss", "-ltnH", f"sport = :{srv.port}"], capture_output=True, text=True).stdout
    # For a listening socket, ss reports the accept backlog as Send-Q.
    assert any(line.split()[2] == "77" for line in listing.splitlines()), listing


def _http_versions(srv) -> tuple[str, str | None]:
    """What a prior-knowledge HTTP/2 client gets (None when the server does not speak h2c), and what an
    HTTP/1.1 client gets."""
    try:
        with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as client:
            h2 = client.get(f"{srv.url}/").http_version
    except httpx.HTTPError:
        h2 = None
    with httpx.Client(trust_env=False, timeout=10) as client:
        h1 = client.get(f"{srv.url}/").http_version
    return h1, h2


@pytest.mark.parametrize("name", ["h2", "zttp", "anything-else"])
def test_http_names_other_than_h11_and_httptools_keep_http2_on(start_server, name):
    # uvicorn's guide: `--http h2` (with a certificate) for HTTP/2. It must not turn HTTP/2 off.
    srv = start_server(APP, "--http", name)
    assert _http_versions(srv) == ("HTTP/1.1", "HTTP/2")
    assert srv.has_line(f"--http {name}: served by ferrocorn's Rust HTTP implementation (HTTP/1.1 and HTTP/2).")


@pytest.mark.parametrize("name", ["h11", "httptools"])
def test_http_h11_and_httptools_mean_http11_only(start_server, name):
    srv = start_server(APP, "--http", name)
    assert _http_versions(srv) == ("HTTP/1.1", None)


def test_http_import_path_is_accepted_and_served_by_the_rust_core(start_server):
    for spec in ("mypkg.protocols:H2Protocol", "mypkg.protocols.H2Protocol"):
        srv = start_server(APP, "--http", spec)
        assert _http_versions(srv) == ("HTTP/1.1", "HTTP/2")
        assert srv.has_line(
            f"--http {spec}: protocol classes are not loaded; ferrocorn's own Rust HTTP implementation serves "
            "(HTTP/1.1 and HTTP/2)."
        )
        srv.close()


def test_http_h2_with_a_certificate_negotiates_h2_by_alpn(start_server, tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    srv = start_server(APP, "--http", "h2", "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with httpx.Client(http2=True, verify=context, trust_env=False, timeout=10) as client:
        response = client.get(f"https://127.0.0.1:{srv.port}/")
    assert response.status_code == 200 and response.http_version == "HTTP/2"


def test_http_protocol_class_through_the_python_api_is_accepted(run_process):
    import sys

    from tests.support.server import free_port

    port = free_port()
    code = (
        "import asyncio, sys, ferrocorn\n"
        "class H2Protocol(asyncio.Protocol): pass\n"
        "ferrocorn.run('tests.apps.options_app:app', port=int(sys.argv[1]), http=H2Protocol)\n"
    )
    srv = run_process([sys.executable, "-c", code, str(port)], port=port, name="http_class")
    srv.wait_ready(timeout=20)
    assert _http_versions(srv) == ("HTTP/1.1", "HTTP/2")
    assert srv.has_line(
        "--http __main__.H2Protocol: protocol classes are not loaded; ferrocorn's own Rust HTTP implementation "
        "serves (HTTP/1.1 and HTTP/2)."
    )
