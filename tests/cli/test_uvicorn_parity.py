"""Every option of uvicorn's own command exists in ferrocorn's with the same flags, type, default and
environment variable; every keyword of uvicorn.run() and uvicorn.Config() is accepted. Fails the day
uvicorn adds an option we lack."""

import inspect

import click
import pytest

uvicorn = pytest.importorskip("uvicorn")

from ferrocorn.cli import main as ferrocorn_command  # noqa: E402
from ferrocorn.config import OPTIONS, PYTHON_ONLY_DEFAULTS  # noqa: E402

UVICORN_PARAMS = [param for param in uvicorn.main.params if isinstance(param, click.Option)]
OURS = {param.name: param for param in ferrocorn_command.params}


@pytest.mark.parametrize("theirs", UVICORN_PARAMS, ids=lambda param: param.name)
def test_option_matches_uvicorn(theirs):
    ours = OURS.get(theirs.name)
    assert ours is not None, f"ferrocorn lacks uvicorn's {theirs.opts + theirs.secondary_opts}"
    assert sorted(ours.opts) == sorted(theirs.opts)
    assert sorted(ours.secondary_opts) == sorted(theirs.secondary_opts)
    assert type(ours.type) is type(theirs.type) and ours.type.name == theirs.type.name
    if isinstance(theirs.type, click.Choice):
        assert list(ours.type.choices) == list(theirs.type.choices)
    assert ours.multiple == theirs.multiple
    assert ours.is_flag == theirs.is_flag
    assert ours.default == theirs.default
    # uvicorn reads UVICORN_<NAME> through click's auto_envvar_prefix; ferrocorn lists it explicitly
    # after its own FERROCORN_<NAME>.
    if theirs.name != "version":
        assert ours.envvar == [f"FERROCORN_{theirs.name.upper()}", f"UVICORN_{theirs.name.upper()}"]


def test_app_argument_reads_the_same_environment_variable():
    (theirs,) = [param for param in uvicorn.main.params if isinstance(param, click.Argument)]
    (ours,) = [param for param in ferrocorn_command.params if isinstance(param, click.Argument)]
    assert ours.name == theirs.name == "app"
    assert "UVICORN_APP" in ours.envvar


@pytest.mark.parametrize("function", [uvicorn.run, uvicorn.Config.__init__], ids=["run", "Config"])
def test_every_python_keyword_is_accepted(function):
    accepted = {option.name for option in OPTIONS} | set(PYTHON_ONLY_DEFAULTS) | {"log_config"}
    keywords = [name for name in inspect.signature(function).parameters if name not in ("self", "app")]
    assert [name for name in keywords if name not in accepted] == []
