"""Shared pieces of the command line: the Typer app, the :func:`command` decorator that turns a
:class:`~saltseg.errors.SaltsegError` into one line on stderr and exit status 2, and option parsers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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


TopK = Annotated[int | None, typer.Option(help="Keep per run the K folds with the best OOF score.")]
"""The ``--top-k`` option of the commands that combine runs."""
Weights = Annotated[str | None, typer.Option(help="Per-run weights, e.g. 0.6,0.4.")]
"""The ``--weights`` option of the commands that combine runs."""


def parse_folds(text: str | None) -> list[int] | None:
    """``--folds 0,2`` as a list of ints (None stays None)."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SaltsegError(f"--folds must be comma-separated integers, got {text!r}") from None


def trainer_overrides(**flags: object) -> list[str]:
    """Hardware flags given on the command line as ``trainer.KEY=VALUE`` config overrides."""
    return [f"trainer.{key}={value}" for key, value in flags.items() if value is not None]


def parse_pair(text: str, name: str) -> tuple[float, float]:
    """Two comma-separated numbers, e.g. ``--band 0.2,0.8``."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise SaltsegError(f"{name} must be two comma-separated numbers, got {text!r}") from None
    return low, high
