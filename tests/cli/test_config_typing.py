"""`Config` declares a typed attribute for every option, and `OPTIONS` stays the one place where options
are named and given their defaults: the two must agree, name for name and value for value."""

from __future__ import annotations

import collections.abc
import types
import typing

import click
import ferrocorn
import pytest
from ferrocorn.cli import main as ferrocorn_command
from ferrocorn.config import OPTIONS, OPTIONS_BY_NAME, PYTHON_ONLY_DEFAULTS, Config
from ferrocorn.logging import LOGGING_CONFIG

#: Annotated attributes that are not options: what __init__ derives from them, and what load() sets.
STATE = {"app", "loaded", "loaded_app", "lifespan_state", "encoded_headers", "reload_dirs_excludes", "tls"}

#: The options whose attribute is not their OPTIONS default after `Config(app)` (see Config's docstring),
#: with no WEB_CONCURRENCY or FORWARDED_ALLOW_IPS in the environment.
NORMALISED = {
    "workers": 1,
    "forwarded_allow_ips": "127.0.0.1",
    "reload_dirs": [],
    "reload_includes": [],
    "reload_excludes": [],
    "headers": [],
    "bind": [],
    "log_config": LOGGING_CONFIG,
}

OPTION_NAMES = [option.name for option in OPTIONS]
ALL_DEFAULTS = {**{option.name: option.default for option in OPTIONS}, **PYTHON_ONLY_DEFAULTS}
HINTS = typing.get_type_hints(Config)


@pytest.fixture
def config(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    return Config("tests.apps.router:app")


def conforms(value, hint) -> bool:
    """Whether `value` is of the annotated type (containers checked item by item)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is float:  # an int is a float to a type checker
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is None:
        return isinstance(value, hint)
    if origin is collections.abc.Callable:
        return callable(value)
    if not isinstance(value, origin):
        return False
    if origin is list:
        return all(conforms(item, args[0]) for item in value)
    if origin is tuple:
        return len(value) == len(args) and all(conforms(item, arg) for item, arg in zip(value, args, strict=True))
    if origin is dict:
        return all(conforms(key, args[0]) and conforms(item, args[1]) for key, item in value.items())
    return True  # other generics (os.PathLike[str], IO[str]): the class is enough


def test_every_option_is_an_annotated_attribute_in_the_same_order():
    assert [name for name in HINTS if name in OPTIONS_BY_NAME] == OPTION_NAMES
    assert [name for name in PYTHON_ONLY_DEFAULTS if name not in HINTS] == []


def test_the_class_gives_no_option_a_default_of_its_own():
    # Annotations only: a value on the class would be a second default, beside the one in OPTIONS.
    assert [name for name in ALL_DEFAULTS if name in vars(Config)] == []


def test_every_annotated_attribute_is_an_option_or_state():
    options = set(OPTION_NAMES) | set(PYTHON_ONLY_DEFAULTS)
    assert sorted(set(HINTS) - STATE - options) == []
    assert sorted(STATE - set(HINTS)) == []
    assert not STATE & options


def test_config_sets_exactly_the_annotated_attributes(config):
    assert sorted(vars(config)) == sorted(HINTS)


@pytest.mark.parametrize("name", list(ALL_DEFAULTS))
def test_attribute_is_the_option_default(config, name):
    expected = NORMALISED.get(name, ALL_DEFAULTS[name])
    value = getattr(config, name)
    assert value == expected
    assert type(value) is type(expected)


def test_log_config_is_a_copy_of_the_built_in_one(config):
    assert config.log_config == LOGGING_CONFIG
    assert config.log_config is not LOGGING_CONFIG


@pytest.mark.parametrize("name", list(ALL_DEFAULTS))
def test_attribute_has_its_annotated_type(config, name):
    assert conforms(getattr(config, name), HINTS[name]), f"{name}={getattr(config, name)!r} is not {HINTS[name]}"


def test_the_command_line_takes_its_options_from_OPTIONS():
    params = [param for param in ferrocorn_command.params if isinstance(param, click.Option)]
    assert [param.name for param in params if param.name != "version"] == OPTION_NAMES
    for param in params:
        if param.name == "version":
            continue
        option = OPTIONS_BY_NAME[param.name]
        assert param.envvar == option.envvars
        if not option.multiple:
            assert param.default == option.default, param.name


@pytest.mark.parametrize("function", [Config, ferrocorn.run], ids=["Config", "run"])
def test_an_unknown_keyword_is_rejected(function):
    with pytest.raises(TypeError, match=r"^Config\(\) got unexpected keyword argument\(s\): bogus, hots$"):
        function("tests.apps.router:app", hots="127.0.0.1", bogus=1)
