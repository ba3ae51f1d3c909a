"""--reload and its options: the app is served again after a change, by a new child process.

Every test works on app files copied into its own tmp_path (never on the repository's files) and
watches only that directory.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import psutil

from tests.support.server import REPO_ROOT, ServerProcess

APP_SOURCE = """\
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version}"}})
"""


def write_app(directory: Path, version: str, name: str = "reload_app.py") -> Path:
    path = directory / name
    path.write_text(APP_SOURCE.format(version=version))
    return path


def start_reloading(start_server, app_dir: Path, *args: str, env: dict | None = None) -> ServerProcess:
    return start_server("reload_app:app", "--reload", "--app-dir", str(app_dir), *args, env=env)


def wait_for_body(srv: ServerProcess, expected: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    body = None
    while body != expected:
        assert time.monotonic() < deadline, f"still serving {body!r}, not {expected!r}\n{srv.log_tail()}"
        try:
            body = httpx.get(srv.url, timeout=2).text
        except httpx.TransportError:
            time.sleep(0.05)


def server_children(srv: ServerProcess) -> list[psutil.Process]:
    """The reloader's server children (not multiprocessing's resource tracker)."""
    return [child for child in psutil.Process(srv.pid).children() if "spawn_main" in " ".join(child.cmdline())]


def detected_line(reloader: str, path: Path) -> re.Pattern[str]:
    return re.compile(rf"^WARNING: +{reloader} detected changes in '{re.escape(str(path))}'\. Reloading\.\.\.$")


def test_an_edited_app_is_served_after_the_reload_and_sigterm_stops_everything(tmp_path, start_server):
    app_file = write_app(tmp_path, "v1")
    srv = start_reloading(start_server, tmp_path, "--reload-dir", str(tmp_path))
    wait_for_body(srv, "v1")
    assert srv.has_line(f"Will watch for changes in these directories: ['{tmp_path}']")
    assert srv.has_line(re.compile(rf"^INFO: +Started reloader process \[{srv.pid}\] using WatchFiles$"))
    (first_child,) = server_children(srv)

    write_app(tmp_path, "v2")
    srv.wait_for_line(detected_line("WatchFiles", app_file))
    wait_for_body(srv, "v2")
    assert not psutil.pid_exists(first_child.pid), "the old child must be gone"
    assert srv.has_line(f"Finished server process [{first_child.pid}]")
    (second_child,) = server_children(srv)

    assert srv.stop(signal.SIGTERM) == 0
    assert srv.has_line(f"Finished server process [{second_child.pid}]")
    assert srv.stderr_lines[-1] == f"INFO:     Stopping reloader process [{srv.pid}]"
    assert not psutil.pid_exists(second_child.pid)


def test_a_syntax_error_does_not_stop_the_reloader(tmp_path, start_server):
    app_file = write_app(tmp_path, "v1")
    srv = start_reloading(start_server, tmp_path, "--reload-dir", str(tmp_path))
    wait_for_body(srv, "v1")

    app_file.write_text("async def app(:\n")
    srv.wait_for_line(re.compile(r"^ERROR: +Error loading ASGI app\. SyntaxError"))
    mark = srv.mark()
    write_app(tmp_path, "fixed")
    srv.wait_for_line(detected_line("WatchFiles", app_file), start=mark)
    wait_for_body(srv, "fixed")

    assert srv.stop(signal.SIGINT) == 0, "Ctrl+C stops the reloader cleanly"
    assert srv.has_line(f"Stopping reloader process [{srv.pid}]")


def test_reload_include_and_exclude_patterns(tmp_path, start_server):
    write_app(tmp_path, "v1")
    excluded = tmp_path / "generated_settings.py"
    excluded.write_text("A = 1\n")
    included = tmp_path / "templates.html"
    included.write_text("<p>1</p>")
    srv = start_reloading(
        start_server,
        tmp_path,
        "--reload-dir",
        str(tmp_path),
        "--reload-include",
        "*.html",
        "--reload-exclude",
        "generated_*.py",
    )
    wait_for_body(srv, "v1")
    mark = srv.mark()
    # The excluded change comes first: had it triggered a reload, its line would come first too.
    excluded.write_text("A = 2\n")
    included.write_text("<p>2</p>")
    srv.wait_for_line(detected_line("WatchFiles", included), start=mark)
    assert not any("generated_settings.py" in line for line in srv.lines_since(mark))


def test_several_reload_dirs_are_watched_and_nothing_else(tmp_path, start_server):
    app_dir, lib_dir, elsewhere = tmp_path / "app", tmp_path / "lib", tmp_path / "elsewhere"
    for directory in (app_dir, lib_dir, elsewhere):
        directory.mkdir()
    write_app(app_dir, "v1")
    srv = start_reloading(start_server, app_dir, "--reload-dir", str(app_dir), "--reload-dir", str(lib_dir))
    wait_for_body(srv, "v1")
    assert srv.has_line(f"Will watch for changes in these directories: {sorted([str(app_dir), str(lib_dir)])}")
    mark = srv.mark()
    (elsewhere / "unwatched.py").write_text("X = 1\n")
    (lib_dir / "helpers.py").write_text("X = 1\n")
    srv.wait_for_line(detected_line("WatchFiles", lib_dir / "helpers.py"), start=mark)
    assert not any("unwatched.py" in line for line in srv.lines_since(mark))


def test_reload_delay_spaces_out_the_checks(tmp_path, start_server):
    app_file = write_app(tmp_path, "v1")
    srv = start_reloading(start_server, tmp_path, "--reload-dir", str(tmp_path), "--reload-delay", "2")
    wait_for_body(srv, "v1")
    write_app(tmp_path, "v2")
    srv.wait_for_line(detected_line("WatchFiles", app_file))
    first_reload = time.monotonic()
    mark = srv.mark()
    write_app(tmp_path, "v3")  # right away: seen only after the delay that follows each reload
    srv.wait_for_line(detected_line("WatchFiles", app_file), start=mark)
    assert time.monotonic() - first_reload >= 1.8
    wait_for_body(srv, "v3")


def test_stat_reload_is_the_fallback_without_watchfiles(tmp_path, start_server):
    blocker = tmp_path / "no_watchfiles"
    blocker.mkdir()
    (blocker / "watchfiles.py").write_text("raise ImportError('watchfiles is not installed')\n")
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    app_file = write_app(app_dir, "v1")
    env = {"PYTHONPATH": f"{blocker}:{REPO_ROOT}"}
    srv = start_reloading(start_server, app_dir, "--reload-dir", str(app_dir), "--reload-include", "*.txt", env=env)
    wait_for_body(srv, "v1")
    assert srv.has_line(re.compile(rf"^INFO: +Started reloader process \[{srv.pid}\] using StatReload$"))
    assert srv.has_line("--reload-include and --reload-exclude have no effect unless watchfiles is installed.")
    write_app(app_dir, "v2")
    srv.wait_for_line(detected_line("StatReload", app_file))
    wait_for_body(srv, "v2")


def test_reload_needs_an_import_string_and_ignores_workers(tmp_path, start_server):
    write_app(tmp_path, "v1")
    srv = start_reloading(start_server, tmp_path, "--reload-dir", str(tmp_path), "--workers", "3")
    wait_for_body(srv, "v1")
    assert srv.has_line(re.compile(r'^WARNING: +"workers" flag is ignored when reloading is enabled\.$'))
    assert len(server_children(srv)) == 1
