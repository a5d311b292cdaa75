"""New job: model, files, grader, seed, suffix and hyperparameters (all `auto` by default); checks the files
and grader before submitting and shows any problem, the daemon's included, next to the field it concerns.

The model can be typed or picked from the models already here (built-in and the daemon's Hugging Face cache,
with size and fit verdict); the memory-fit estimate for the current settings (pre-flight `estimate_only`,
from the model's config, no weights) is shown under the buttons and follows every change."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Checkbox, Collapsible, Footer, Header, Input, Label, Select, Static

from daemon import api
from daemon.client import ApiRequestError
from rft_tui.estimate_text import gib
from rft_tui.messages import (
    JobRefused,
    JobSubmitted,
    LocalModelsLoaded,
    MemoryEstimated,
    NewJobChecked,
    NewJobChoicesLoaded,
)
from rft_tui.screens.base import RftScreen
from rft_tui.tools_text import ToolsTextError, tools_from_arg
from rft_tui.widgets.file_picker import file_label
from rft_tui.widgets.form_hyperparams import HyperparameterFields, check_hyperparameters, field_key
from rft_tui.widgets.grader_text import GraderTextError, grader_from_text

DEFAULT_MODEL = "builtin:tiny-arith"
FIELDS = ("model", "training_file", "validation_file", "grader", "seed", "suffix", "tools", "cluster")
PREFILL_GRADER = "__job_grader__"
HP_PREFIX = "method.reinforcement.hyperparameters."
ESTIMATE_DEBOUNCE_S = 0.4
#: the estimate does not read the grader; before one is chosen, this stands in so the request is complete
ESTIMATE_GRADER: dict[str, Any] = {"type": "string_check", "name": "estimate", "input": "{{sample.output_text}}",
                                   "reference": "", "operation": "eq"}


def model_label(m: api.LocalModel) -> str:
    """`id · size · fit` for the local-models list."""
    size = gib(m.size_bytes) if m.size_bytes is not None else "not built" if m.source == "builtin" else "?"
    fit = {True: "fits", False: "too big", None: "fit ?"}[m.fits]
    return f"{m.id} · {size} · {fit}"


def estimate_text(e: api.MemoryEstimate | None, error: str | None) -> Text:
    """Two or three lines: total vs free, the breakdown, the verdict's fix."""
    if e is None:
        return Text(f"memory estimate: {error or 'none'}", style="dim")
    style = {True: "green", False: "red", None: "yellow"}[e.fits]
    out = Text("memory ", style="bold")
    out.append(f"{gib(e.total_bytes)} on {e.device}, {gib(e.device_free_bytes)} free: {e.verdict.split(':')[0]}\n",
               style=style)
    out.append(f"  weights {gib(e.weights_bytes)} · LoRA+optimizer {gib(e.lora_bytes + e.optimizer_bytes)} · "
               f"activations {gib(e.activations_bytes)} · generation {gib(e.generation_bytes)}", style="dim")
    if e.suggestion:
        out.append(f"\n  fix: {e.suggestion}", style=style)
    return out


def field_for_param(param: str | None) -> str | None:
    """The form field an API error's `param` names (None: show it at the top of the form)."""
    if not param:
        return None
    if param.startswith(HP_PREFIX):
        return field_key(param[len(HP_PREFIX):].split(".")[0])
    if param.startswith("hyperparameters."):
        return field_key(param.split(".")[1])
    if param.startswith(("method.reinforcement.tools", "tools")):
        return "tools"
    if param.startswith(("method.reinforcement.grader", "grader", "method")):
        return "grader"
    head = param.split(".")[0]
    return head if head in FIELDS else None


def cluster_label(c: api.Cluster) -> str:
    """`gpu-ray (ray, 2 x 8 GPU)`: what a job on it gets by default."""
    d = c.defaults
    per_node = f"{d.gpus_per_node} GPU" if d.gpus_per_node else f"{d.processes_per_node} CPU"
    return f"{c.name} ({c.kind}, {d.nodes} x {per_node})"


def error_id(field: str) -> str:
    return "err-" + field.replace(".", "-")


class NewJobScreen(RftScreen):
    """The form; `ctrl+s` or the Create button checks, then submits. Errors stay next to their fields."""

    HELP_TITLE = "New job"
    CSS_PATH = "new_job.tcss"
    AUTO_FOCUS = "#nj-model"
    BINDINGS = [
        Binding("ctrl+s", "submit", "Create job", id="newjob.submit", priority=True,
                tooltip="Check the files and grader, then create the job"),
        Binding("ctrl+k", "check", "Check", id="newjob.check", priority=True,
                tooltip="Check the files, overlap and grader without creating the job"),
    ]

    def __init__(self, prefill: api.FineTuningJob | None = None) -> None:
        super().__init__()
        self.prefill = prefill
        reinforcement = (prefill.method.get("reinforcement") or {}) if prefill else {}
        self.prefill_grader: dict[str, Any] | None = reinforcement.get("grader")
        self.prefill_hyper: dict[str, Any] = dict(reinforcement.get("hyperparameters") or {})
        self.prefill_tools: dict[str, Any] | None = reinforcement.get("tools") or None
        self.grader_files: list[api.GraderFile] = []
        self.files: list[api.FileObject] = []
        self.submit_after_check = False
        self.busy = False
        self.checked_request: api.JobCreateRequest | None = None
        self.local_models: list[api.LocalModel] | None = None
        self.estimate: api.MemoryEstimate | None = None

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="nj-form"):
            title = f"Duplicate of {self.prefill.id}" if self.prefill else "New fine-tuning job"
            yield Label(title, id="nj-title")
            yield Static("", id="err-general", classes="form-error")
            yield from self._row("model", Input(self.prefill.model if self.prefill else DEFAULT_MODEL, id="nj-model",
                                                compact=True))
            yield from self._row("models here", Select[str]([], prompt="(looking…)", id="nj-local-models",
                                                            compact=True), field=None)
            yield from self._row("training file",
                                 Select[str]([], prompt="choose a file", id="nj-training_file", compact=True),
                                 field="training_file")
            yield from self._row("validation file",
                                 Select[str]([], prompt="(none)", id="nj-validation_file", compact=True),
                                 field="validation_file")
            yield from self._row("grader", Select[str]([], prompt="choose a grader file", id="nj-grader", compact=True))
            yield from self._row("or grader path", Input(placeholder="path to a .json/.yaml/.py grader",
                                                         id="nj-grader-path", compact=True), field=None)
            yield from self._row("seed", Input(placeholder="random", id="nj-seed", type="integer", compact=True))
            yield from self._row("suffix", Input(placeholder="optional", id="nj-suffix", compact=True))
            yield from self._row("tools", Input(
                json.dumps(self.prefill_tools) if self.prefill_tools else "", id="nj-tools", compact=True,
                placeholder='optional: {"add": {"type": "http", "url": ...}} or a file',
                tooltip="Agent RFT: how the rows' tools run (inline JSON, or a .json/.yaml file); docs/agent-rft.md"))
            yield from self._row("run on", Select[str]([], prompt="this machine", id="nj-cluster", compact=True),
                                 field="cluster")
            with Horizontal(classes="form-row"):
                yield Label("", classes="form-label")
                yield Checkbox("allow train/validation overlap", id="nj-allow-overlap", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("", classes="form-label")
                yield Checkbox("create even if the memory estimate says it will not fit", id="nj-force",
                               compact=True)
            with Collapsible(title="Hyperparameters (auto unless set)", collapsed=True, id="nj-hyper"):
                yield HyperparameterFields(self.prefill_hyper, id="nj-hyperparameters")
            with Horizontal(id="nj-buttons"):
                yield Button("Check (ctrl+k)", id="nj-check")
                yield Button("Create job (ctrl+s)", id="nj-submit", variant="primary")
            yield Static("", id="nj-notes")
            yield Static("", id="nj-estimate")
        yield Footer()

    def _row(self, label: str, widget: Any, field: str | None = "") -> ComposeResult:
        key = (widget.id or "").removeprefix("nj-") if field == "" else field
        with Horizontal(classes="form-row"):
            yield Label(label, classes="form-label")
            yield widget
            if key:
                yield Static("", id=error_id(key), classes="field-error")

    def on_mount(self) -> None:
        self.load_choices()
        self.load_models()

    # ------------------------------------------------------------------ workers

    @work(exclusive=True, group="newjob-models", exit_on_error=False)
    async def load_models(self) -> None:
        page = await self.app.client.list_models()
        self.post_message(LocalModelsLoaded(list(page.data)))

    @work(exclusive=True, group="newjob-estimate", exit_on_error=False)
    async def estimate_memory(self, request: api.PreflightRequest) -> None:
        """Pre-flight's estimate alone for the form's settings; a newer change cancels this one (exclusive)."""
        import asyncio

        await asyncio.sleep(ESTIMATE_DEBOUNCE_S)  # typing: wait for a pause before asking
        try:
            report = await self.app.client.preflight(request)
        except ApiRequestError as e:
            self.post_message(MemoryEstimated(None, e.error.message))
            return
        self.post_message(MemoryEstimated(report.memory_estimate, report.memory_estimate_error))

    @work(exclusive=True, group="newjob-choices", exit_on_error=False)
    async def load_choices(self) -> None:
        files = await self.app.client.list_files(limit=1000)
        graders = await self.app.client.list_grader_files()
        clusters = await self.app.client.list_clusters()
        self.post_message(NewJobChoicesLoaded(list(files.data), list(graders.data), list(clusters.data)))

    @work(exclusive=True, group="newjob-check", exit_on_error=False)
    async def check(self, request: api.JobCreateRequest) -> None:
        """Validate the model, the files (against each other, with the grader's fields) and the grader."""
        client = self.app.client
        grader = request.method.reinforcement.grader
        problems: dict[str, str] = {}
        notes: list[str] = []
        try:
            await client.check_model(request.model)
        except ApiRequestError as e:
            problems[field_for_param(e.param) or "model"] = e.error.message
        try:
            await client.validate_grader(grader)
        except ApiRequestError as e:
            problems["grader"] = e.error.message
        try:
            report = await client.validate_file(api.FileValidateRequest(
                file_id=request.training_file, against=request.validation_file,
                grader=grader if "grader" not in problems else None))
        except ApiRequestError as e:
            if e.status_code >= 500 or e.status_code == 404 and e.param is None:
                notes.append(f"could not pre-check the files ({e.error.message}); the daemon checks them again")
            else:
                problems[field_for_param(e.param) or "training_file"] = e.error.message
        else:
            _file_problems(report, request.allow_overlap, problems, notes)
        self.post_message(NewJobChecked(problems, notes))

    @work(exclusive=True, group="newjob-submit", exit_on_error=False)
    async def submit(self, request: api.JobCreateRequest) -> None:
        try:
            job = await self.app.client.create_job(request)
        except ApiRequestError as e:
            self.post_message(JobRefused(e.param, e.error.message))
            return
        self.post_message(JobSubmitted(job))

    # ------------------------------------------------------------------ handlers

    @on(NewJobChoicesLoaded)
    def _choices(self, message: NewJobChoicesLoaded) -> None:
        self.files, self.grader_files = message.files, message.graders
        options = [(file_label(f), f.id) for f in message.files]
        train = self.query_one("#nj-training_file", Select)
        valid = self.query_one("#nj-validation_file", Select)
        train.set_options(options)
        valid.set_options(options)
        ids = {f.id for f in message.files}
        if self.prefill:
            if self.prefill.training_file in ids:
                train.value = self.prefill.training_file
            if self.prefill.validation_file in ids:
                valid.value = self.prefill.validation_file
        grader_options = [(("✓ " if g.valid else "✗ ") + g.name, g.name) for g in message.graders]
        if self.prefill_grader is not None:
            name = self.prefill_grader.get("name", "grader")
            grader_options.insert(0, (f"grader of {self.prefill.id if self.prefill else 'job'} ({name})",
                                      PREFILL_GRADER))
        grader = self.query_one("#nj-grader", Select)
        grader.set_options(grader_options)
        if self.prefill_grader is not None:
            grader.value = PREFILL_GRADER
        picker = self.query_one("#nj-cluster", Select)
        picker.set_options([(cluster_label(c), c.name) for c in message.clusters])
        if self.prefill and self.prefill.cluster and self.prefill.cluster.name in {c.name for c in message.clusters}:
            picker.value = self.prefill.cluster.name

    @on(LocalModelsLoaded)
    def _models(self, message: LocalModelsLoaded) -> None:
        self.local_models = message.models
        select = self.query_one("#nj-local-models", Select)
        select.set_options([(model_label(m), m.id) for m in message.models])
        select.prompt = f"pick one of {len(message.models)} (or type above)"
        self.update_estimate()

    @on(Select.Changed, "#nj-local-models")
    def _model_picked(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.query_one("#nj-model", Input).value = event.value

    @on(Input.Changed)
    @on(Select.Changed, "#nj-training_file")
    @on(Select.Changed, "#nj-grader")
    def _settings_changed(self, event: Input.Changed | Select.Changed) -> None:
        if event.control.id in ("nj-model", "nj-training_file", "nj-grader", "nj-tools") or (
                event.control.id or "").startswith("hp-"):
            self.update_estimate()

    def update_estimate(self) -> None:
        """Ask for the estimate of the settings as they are now (skipped until a model and a training file are set)."""
        model = self.query_one("#nj-model", Input).value.strip()
        train = self.query_one("#nj-training_file", Select).value
        hyper, problems = check_hyperparameters(self.query_one(HyperparameterFields).values())
        if not model or not isinstance(train, str) or problems:
            return
        try:
            tools_text = self.query_one("#nj-tools", Input).value.strip()
            tools = tools_from_arg(tools_text) if tools_text else None  # tools turn vLLM off: it changes the estimate
            request = api.PreflightRequest(
                model=model, training_file=train, estimate_only=True,
                method=api.JobMethod(reinforcement=api.ReinforcementMethod.model_validate({
                    "grader": self.prefill_grader or ESTIMATE_GRADER,
                    "hyperparameters": api.ReinforcementHyperparameters(**hyper), "tools": tools})))
        except (ValueError, ToolsTextError):
            return
        self.estimate_memory(request)

    @on(MemoryEstimated)
    def _estimated(self, message: MemoryEstimated) -> None:
        self.estimate = message.estimate
        self.query_one("#nj-estimate", Static).update(estimate_text(message.estimate, message.error))

    @on(NewJobChecked)
    def _checked(self, message: NewJobChecked) -> None:
        self._show_problems(message.problems)
        notes = Text("\n".join(message.notes), style="dim")
        if not message.problems and self.submit_after_check and self.checked_request is not None:
            notes.append("\ncreating the job…", style="dim")
            self.submit(self.checked_request)
            self.query_one("#nj-notes", Static).update(notes)
            return
        self.busy = False
        self.submit_after_check = False
        if not message.problems:
            notes.append("\n✓ model, files and grader look good", style="green")
        self.query_one("#nj-notes", Static).update(notes)

    @on(JobRefused)
    def _refused(self, message: JobRefused) -> None:
        self.busy = False
        self.submit_after_check = False
        field = field_for_param(message.param)
        self._show_problems({field or "general": message.message})
        self.query_one("#nj-notes", Static).update("")

    @on(JobSubmitted)
    def _submitted(self, message: JobSubmitted) -> None:
        self.busy = False
        job = message.job
        self.app.notify(f"Created job {job.id} ({job.status.value})", timeout=4)
        self.app.post_message(JobSubmitted(job))
        self.app.pop_screen()
        open_job = getattr(self.app, "action_open_job", None)
        if callable(open_job):
            open_job(job.id)

    @on(Button.Pressed, "#nj-submit")
    def _submit_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#nj-check")
    def _check_pressed(self) -> None:
        self.action_check()

    # ------------------------------------------------------------------ form -> request

    def _request_or_show_errors(self, grader_override: dict[str, Any] | None = None) -> api.JobCreateRequest | None:
        problems: dict[str, str] = {}
        model = self.query_one("#nj-model", Input).value.strip()
        if not model:
            problems["model"] = "a model is required (e.g. builtin:tiny-arith or a hub id / local path)"
        train = self.query_one("#nj-training_file", Select).value
        if not isinstance(train, str):
            problems["training_file"] = "choose the training file (import one with rft-tui files import)"
        valid = self.query_one("#nj-validation_file", Select).value
        grader = self._grader(problems, grader_override)
        seed_text = self.query_one("#nj-seed", Input).value.strip()
        seed: int | None = None
        if seed_text:
            try:
                seed = int(seed_text)
            except ValueError:
                problems["seed"] = "an integer, or empty for a random seed"
        suffix = self.query_one("#nj-suffix", Input).value.strip() or None
        tools_text = self.query_one("#nj-tools", Input).value.strip()
        tools: dict[str, Any] | None = None
        if tools_text:
            try:
                tools = tools_from_arg(tools_text)
            except ToolsTextError as e:
                problems["tools"] = str(e)
        cluster = self.query_one("#nj-cluster", Select).value
        hyper, hp_problems = check_hyperparameters(self.query_one(HyperparameterFields).values())
        problems.update(hp_problems)
        if hp_problems:
            self.query_one("#nj-hyper", Collapsible).collapsed = False
        request: api.JobCreateRequest | None = None
        if not problems:
            try:
                request = api.JobCreateRequest(
                    model=model, training_file=str(train), validation_file=valid if isinstance(valid, str) else None,
                    seed=seed, suffix=suffix, allow_overlap=self.query_one("#nj-allow-overlap", Checkbox).value,
                    cluster=cluster if isinstance(cluster, str) else None,
                    force=self.query_one("#nj-force", Checkbox).value,
                    method=api.JobMethod(reinforcement=api.ReinforcementMethod.model_validate({
                        "grader": grader or {}, "hyperparameters": api.ReinforcementHyperparameters(**hyper),
                        "tools": tools})))
            except ValueError as e:
                errors: list[Any] = getattr(e, "errors", list)()
                loc = ".".join(str(p) for p in (errors[0].get("loc", ()) if errors else ()))
                msg = str(errors[0].get("msg", e)).removeprefix("Value error, ") if errors else str(e)
                problems[field_for_param(loc) or "general"] = msg
        self._show_problems(problems)
        return request if not problems else None

    def _grader(self, problems: dict[str, str], override: dict[str, Any] | None) -> dict[str, Any] | None:
        path = self.query_one("#nj-grader-path", Input).value.strip()
        if path:
            p = Path(path).expanduser()
            try:
                return grader_from_text(p.name, p.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as e:
                problems["grader"] = f"cannot read {p}: {e}"
            except GraderTextError as e:
                problems["grader"] = str(e)
            return None
        if override is not None:
            return override
        choice = self.query_one("#nj-grader", Select).value
        if choice == PREFILL_GRADER and self.prefill_grader is not None:
            return self.prefill_grader
        if not isinstance(choice, str):
            problems["grader"] = "choose a grader file (or give a path)"
            return None
        problems["grader"] = f"loading {choice}…"
        return None

    def _show_problems(self, problems: dict[str, str]) -> None:
        for widget in self.query(".field-error, .form-error").results(Static):
            widget.update("")
        for field, message in problems.items():
            target = self.query(f"#{error_id(field)}")
            (target.first(Static) if target else self.query_one("#err-general", Static)).update(
                Text(f"✗ {message}", style="red"))

    # ------------------------------------------------------------------ actions

    def action_check(self, then_submit: bool = False) -> None:
        if self.busy:
            return
        choice = self.query_one("#nj-grader", Select).value
        path = self.query_one("#nj-grader-path", Input).value.strip()
        if not path and isinstance(choice, str) and choice != PREFILL_GRADER:
            self._check_with_grader_file(choice, then_submit)
            return
        self._start_check(self._request_or_show_errors(), then_submit)

    def action_submit(self) -> None:
        self.action_check(then_submit=True)

    @work(exclusive=True, group="newjob-grader", exit_on_error=False)
    async def _check_with_grader_file(self, name: str, then_submit: bool) -> None:
        grader_file = await self.app.client.get_grader_file(name)
        self.post_message(self.GraderFetched(grader_file, then_submit))

    @dataclass
    class GraderFetched(Message):
        """The chosen grader file's content, fetched for the check."""

        grader_file: api.GraderFile
        then_submit: bool

    @on(GraderFetched)
    def _grader_fetched(self, message: GraderFetched) -> None:
        gf = message.grader_file
        try:
            grader = grader_from_text(gf.name, gf.content or "")
        except GraderTextError as e:
            self._show_problems({"grader": str(e)})
            return
        self._start_check(self._request_or_show_errors(grader_override=grader), message.then_submit)

    def _start_check(self, request: api.JobCreateRequest | None, then_submit: bool) -> None:
        if request is None:
            return
        self.busy = True
        self.submit_after_check = then_submit
        self.checked_request = request
        self.query_one("#nj-notes", Static).update(Text("checking the model, files and grader…", style="dim"))
        self.check(request)


def _first(problems: list[api.Problem]) -> str:
    p = problems[0]
    where = f"line {p.line}: " if p.line is not None else ""
    more = f" (+{len(problems) - 1} more; see the Files screen)" if len(problems) > 1 else ""
    return f"{where}{p.message}{more}"


def _file_problems(report: api.ValidationReport, allow_overlap: bool, problems: dict[str, str],
                   notes: list[str]) -> None:
    """Sort a validation report's errors to the form fields they concern."""
    def split(rep: api.ValidationReport) -> tuple[list[api.Problem], list[api.Problem]]:
        errors = [p for p in rep.problems if p.severity == "error"]
        grader_fields = [p for p in errors if p.code == "missing_item_field"]
        return [p for p in errors if p not in grader_fields], grader_fields

    train_errors, train_fields = split(report)
    if train_errors:
        problems["training_file"] = _first(train_errors)
    fields = list(train_fields)
    if report.against is not None:
        valid_errors, valid_fields = split(report.against)
        fields += valid_fields
        if valid_errors:
            problems["validation_file"] = _first(valid_errors)
    if fields:
        problems["grader"] = "the files lack fields this grader uses: " + _first(fields)
    overlap = report.overlap
    if overlap is not None and overlap.exact and not allow_overlap:
        problems.setdefault("validation_file", f"{overlap.exact} validation rows also appear in the training file "
                                                "(tick 'allow overlap' to go ahead anyway)")
    elif overlap is not None and (overlap.exact or overlap.near):
        notes.append(f"overlap: {overlap.exact} exact, {overlap.near} near-duplicate validation rows")
    if report.warnings:
        notes.append(f"{report.warnings} warnings in the training file (see the Files screen)")
