"""``python -m saltseg``: the command line (also what torchrun launches)."""

from saltseg.cli import app

if __name__ == "__main__":
    app()
