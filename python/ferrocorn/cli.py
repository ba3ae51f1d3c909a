"""The `ferrocorn` command. It only maps flags to `Config`: every option lives in config.py."""

from __future__ import annotations

import platform
import sys
from typing import Any

import click

from ferrocorn._ferrocorn import __version__
from ferrocorn.api import run
from ferrocorn.config import OPTIONS, Option
from ferrocorn.logging import LOGGING_CONFIG


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    python = f"{platform.python_implementation()} {platform.python_version()}"
    click.echo(f"Running ferrocorn {__version__} with {python} on {platform.system()}")
    ctx.exit()


def _click_option(option: Option) -> Any:
    kwargs: dict[str, Any] = {
        "default": option.default,
        "help": option.help,
        "envvar": option.envvars,
        "show_default": option.show_default,
    }
    if option.is_flag:
        kwargs["is_flag"] = True
    else:
        kwargs["type"] = option.type
    if option.multiple:
        kwargs["multiple"] = True
        del kwargs["default"]  # click's own default for repeatable options, as in uvicorn
    if option.metavar:
        kwargs["metavar"] = option.metavar
    return click.option(*option.flags, option.name, **kwargs)


def _build_command() -> click.Command:
    def main(app: str, **options: Any) -> None:
        if options["log_config"] is None:
            options["log_config"] = LOGGING_CONFIG
        run(app, **options)

    # click lists options in the reverse order of application: --version goes last, as in uvicorn.
    command: Any = click.option(
        "--version",
        is_flag=True,
        callback=_print_version,
        expose_value=False,
        is_eager=True,
        help="Display the ferrocorn version and exit.",
    )(main)
    for option in reversed(OPTIONS):
        command = _click_option(option)(command)
    command = click.argument("app", envvar=["FERROCORN_APP", "UVICORN_APP"])(command)
    return click.command(context_settings={"auto_envvar_prefix": "FERROCORN"})(command)


main = _build_command()

if __name__ == "__main__":
    sys.exit(main())
