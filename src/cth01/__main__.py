"""`python -m cth01` runs the command line."""

from cth01.cli import app

app(prog_name="cth01")
