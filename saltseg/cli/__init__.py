"""The ``saltseg`` command line: one Typer app, each command a thin call into the library.

Library functions raise :class:`saltseg.errors.SaltsegError` for bad input; every command is
registered through :func:`saltseg.cli.base.command`, which turns such an error into one line on
stderr and exit status 2. The commands live in the modules below, grouped by what they work on;
importing this package registers them all (in the order ``saltseg --help`` lists them).
"""

from __future__ import annotations

from saltseg.cli.base import app, command

# isort: off
from saltseg.cli import setup, training, predicting, jigsaw

# isort: on

__all__ = ["app", "command", "jigsaw", "predicting", "setup", "training"]
