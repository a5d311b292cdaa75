"""Job screen (placeholder while the tabs are written)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer, Header, Static

from rft_tui.screens.base import RftScreen


class JobScreen(RftScreen):
    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.job_id)
        yield Footer()
