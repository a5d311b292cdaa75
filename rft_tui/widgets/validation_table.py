"""Base vs checkpoint, row by row: which validation examples improved, regressed, or stayed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

from daemon import api
from daemon.text import clip
from rft_tui.widgets.trajectory import tool_mark

CHANGE_FILTERS = ("all", "improved", "regressed", "unchanged")
SORTS = ("row", "change", "base", "score")
TOPK_KEY = re.compile(r"^top[_-]?(\d+|k)$", re.IGNORECASE)
PASS = 1.0


@dataclass(frozen=True)
class Compared:
    """One validation example at the base model and at the selected step."""

    row_index: int
    prompt: str
    reference: str | None
    base: api.ValidationRow | None
    selected: api.ValidationRow | None

    @property
    def change(self) -> float:
        if self.base is None or self.selected is None:
            return 0.0
        return self.selected.reward - self.base.reward

    @property
    def verdict(self) -> str:
        return "improved" if self.change > 1e-9 else ("regressed" if self.change < -1e-9 else "unchanged")


def compare(base: Sequence[api.ValidationRow], selected: Sequence[api.ValidationRow]) -> list[Compared]:
    by_base = {r.row_index: r for r in base}
    by_sel = {r.row_index: r for r in selected}
    out = []
    for idx in sorted(set(by_base) | set(by_sel)):
        any_row = by_sel.get(idx) or by_base[idx]
        out.append(Compared(idx, any_row.prompt, any_row.reference, by_base.get(idx), by_sel.get(idx)))
    return out


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def aggregates(rows: Sequence[Compared]) -> dict[str, float | int | None]:
    """Mean reward and pass rate (base and selected), improved/regressed counts, top-k when graded."""
    base = [r.base.reward for r in rows if r.base]
    sel = [r.selected.reward for r in rows if r.selected]
    out: dict[str, float | int | None] = {
        "base_mean": _mean(base), "mean": _mean(sel),
        "base_pass_rate": _mean([1.0 if x >= PASS else 0.0 for x in base]),
        "pass_rate": _mean([1.0 if x >= PASS else 0.0 for x in sel]),
        "improved": sum(1 for r in rows if r.verdict == "improved"),
        "regressed": sum(1 for r in rows if r.verdict == "regressed"),
        "unchanged": sum(1 for r in rows if r.verdict == "unchanged"),
    }
    for which, pick in (("base_", lambda r: r.base), ("", lambda r: r.selected)):
        keys: dict[str, list[float]] = {}
        for r in rows:
            vr = pick(r)
            for k, v in (vr.sub_rewards if vr else {}).items():
                if TOPK_KEY.match(k) and v is not None:
                    keys.setdefault(k.lower().replace("-", "_"), []).append(v)
        for k, vs in keys.items():
            out[which + k] = _mean(vs)
    for which, pick in (("base_", lambda r: r.base), ("", lambda r: r.selected)):
        episodes = [vr for r in rows if (vr := pick(r)) is not None and vr.output_messages is not None]
        if episodes:  # agent RFT: share of the episodes that called a tool
            out[which + "tool_call_rate"] = _mean([1.0 if vr.tool_calls else 0.0 for vr in episodes])
    return out


def summary_text(agg: dict[str, float | int | None], step: int | None) -> Text:
    def f(x: float | int | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    text = Text.assemble(("mean ", "bold"), f"{f(agg['base_mean'])} → {f(agg['mean'])}   ",
                         ("pass ", "bold"), f"{f(agg['base_pass_rate'])} → {f(agg['pass_rate'])}   ",
                         ("improved ", "bold"), (str(agg["improved"]), "green"), "  ",
                         ("regressed ", "bold"), (str(agg["regressed"]), "red"), "  ",
                         ("same ", "bold"), str(agg["unchanged"]))
    for k in sorted(k for k in agg if TOPK_KEY.match(k)):
        text.append(f"   {k} {f(agg.get('base_' + k))} → {f(agg[k])}")
    if "tool_call_rate" in agg or "base_tool_call_rate" in agg:
        def pct(x: float | int | None) -> str:
            return "-" if x is None else f"{x:.0%}"

        text.append("   ")
        text.append("tool calls ", "bold")
        text.append(f"{pct(agg.get('base_tool_call_rate'))} → {pct(agg.get('tool_call_rate'))}")
    if step is not None:
        text.append(f"   (base vs step {step})", style="dim")
    return text


class ValidationTable(DataTable[str | Text]):
    """Rows are rebuilt when the step, filter or sort changes (a selection, not a live append)."""

    DEFAULT_CSS = "ValidationTable { height: 1fr; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_shown: list[Compared] = []

    def on_mount(self) -> None:
        for key, label in (("row", "#"), ("prompt", "Prompt"), ("reference", "Reference"), ("base_out", "Base output"),
                           ("base", "Base"), ("out", "Output"), ("score", "Score"), ("change", "Change")):
            self.add_column(label, key=key)

    def show(self, rows: Sequence[Compared], change_filter: str = "all", sort: str = "row") -> None:
        picked = [r for r in rows if change_filter == "all" or r.verdict == change_filter]
        keyf = {"row": lambda r: r.row_index, "change": lambda r: (r.change, r.row_index),
                "base": lambda r: (r.base.reward if r.base else -1, r.row_index),
                "score": lambda r: (r.selected.reward if r.selected else -1, r.row_index)}[sort]
        picked.sort(key=keyf, reverse=sort in ("score",))
        self.clear()
        self.rows_shown = picked
        for r in picked:
            mark = {"improved": Text("▲ improved", "green"), "regressed": Text("▼ regressed", "red"),
                    "unchanged": Text("= same", "dim")}[r.verdict]
            base, chosen = r.base.output if r.base else "", r.selected.output if r.selected else ""
            self.add_row(str(r.row_index), clip(r.prompt, 28, one_line=True), clip(r.reference, 10, one_line=True),
                         clip(tool_mark(r.base.tool_calls if r.base else None) + base, 16, one_line=True),
                         f"{r.base.reward:.2f}" if r.base else "-",
                         clip(tool_mark(r.selected.tool_calls if r.selected else None) + chosen, 16, one_line=True),
                         f"{r.selected.reward:.2f}" if r.selected else "-", mark, key=str(r.row_index))
