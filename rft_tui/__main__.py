"""`python -m rft_tui` == `rft-tui`."""

from rft_tui.cli import run

run()
