"""The jobs list: one row per job, updated cell by cell (never reloaded) as the daemon reports."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from daemon import api
from rft_tui.widgets import fmt

COLUMNS: tuple[tuple[str, str], ...] = (  # what matters most first, so 80 columns show it
    ("id", "Job"), ("status", "Status"), ("progress", "Progress"), ("train", "Train R"),
    ("valid", "Valid R base→now"), ("elapsed", "Elapsed"), ("eta", "ETA"), ("model", "Model"), ("files", "Files"),
)


def job_cells(job: api.FineTuningJob, now: float, names: dict[str, str] | None = None) -> dict[str, str | Text]:
    elapsed, eta = fmt.elapsed_and_eta(job, now)
    return {
        "id": fmt.short_id(job.id),
        "status": fmt.status_with_alarms(job),
        "model": fmt.clip(job.model + (f" ({job.user_provided_suffix})" if job.user_provided_suffix else ""), 24),
        "files": fmt.clip(fmt.file_label(job, names), 40),
        "progress": fmt.progress(job),
        "train": fmt.reward(job.progress.train_reward_mean),
        "valid": fmt.valid_change(job.progress.valid_reward_base, job.progress.valid_reward_latest),
        "elapsed": fmt.duration(elapsed),
        "eta": fmt.duration(eta) if eta is not None else "-",
    }


class JobsTable(DataTable[str | Text]):
    """Rows keyed by job id; `upsert` changes only the cells whose text changed."""

    DEFAULT_CSS = "JobsTable { height: 1fr; }"
    BINDINGS = [Binding("enter", "select_cursor", "Open", id="jobs.open", tooltip="Open the highlighted job")]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self._shown: dict[str, dict[str, str]] = {}
        self._order: list[str] = []
        self.file_names: dict[str, str] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def selected_job_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - cursor outside the rows
            return None

    def show(self, jobs: list[api.FineTuningJob], now: float) -> None:
        """Replace all rows (first load and filter changes only), newest first."""
        keep = self.selected_job_id
        self.clear()
        self._shown.clear()
        self._order.clear()
        for job in jobs:
            self._add(job, now)
        if keep and keep in self._shown:
            self.move_cursor(row=self.get_row_index(keep))

    def upsert(self, job: api.FineTuningJob, now: float, at_top: bool = False) -> None:
        if job.id not in self._shown:
            self._add(job, now)
            if at_top and self.row_count > 1:
                self._order.remove(job.id)
                self._order.insert(0, job.id)
                pos = {fmt.short_id(k): i for i, k in enumerate(self._order)}
                self.sort("id", key=lambda cell: pos.get(str(cell), len(pos)))
            return
        cells = job_cells(job, now, self.file_names)
        shown = self._shown[job.id]
        for key, value in cells.items():
            plain = value.plain if isinstance(value, Text) else value
            if shown.get(key) != plain:  # a column drawn narrow (`running`, ETA `-`) widens for `cancelled`, `2m51s`
                self.update_cell(job.id, key, value, update_width=True)
                shown[key] = plain

    def remove_job(self, job_id: str) -> None:
        if job_id in self._shown:
            self.remove_row(job_id)
            del self._shown[job_id]
            self._order.remove(job_id)

    def _add(self, job: api.FineTuningJob, now: float) -> None:
        cells = job_cells(job, now, self.file_names)
        self.add_row(*(cells[k] for k, _ in COLUMNS), key=job.id)
        self._order.append(job.id)
        self._shown[job.id] = {k: (v.plain if isinstance(v, Text) else v) for k, v in cells.items()}
