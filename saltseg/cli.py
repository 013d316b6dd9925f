"""The ``saltseg`` command line: one Typer app, each command a thin call into the library.

Library functions raise :class:`saltseg.errors.SaltsegError` for bad input; every command is
registered through :func:`command`, which turns such an error into one line on stderr and exit
status 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from saltseg.errors import SaltsegError

app = typer.Typer(
    name="saltseg",
    help="Salt body segmentation in seismic images (TGS Salt Identification Challenge).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a CLI command whose :class:`SaltsegError` becomes a one-line error."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                return func(*a, **kw)
            except SaltsegError as err:
                typer.echo(f"error: {err}", err=True)
                raise typer.Exit(code=2) from None

        return app.command(*args, **kwargs)(wrapper)

    return decorator


@app.callback()
def _root() -> None:
    """Salt body segmentation in seismic images (TGS Salt Identification Challenge)."""


@command()
def version() -> None:
    """Print the saltseg version."""
    from saltseg import __version__

    typer.echo(__version__)


# --- data ---------------------------------------------------------------------------------------


# --- models -------------------------------------------------------------------------------------


# --- training -----------------------------------------------------------------------------------


# --- inference ----------------------------------------------------------------------------------


# --- mosaic -------------------------------------------------------------------------------------


__all__ = ["Annotated", "Path", "app", "command"]
