"""One training run: the job's snapshot -> TRL GRPOTrainer + PEFT LoRA, reporting through JobReporter.

Run as `python -m daemon.worker JOB_ID` (or under torchrun, N ranks: only rank 0 writes to the store).
Validation is our own greedy pass at step 0, every `eval_interval` steps and at the end; a checkpoint
(adapter + optimizer/scheduler/RNG/trainer state, a real HF checkpoint dir so TRL can resume from it) is
saved at each validation and on pause; the 3 best by validation reward plus the latest are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from daemon import api, metrics
from daemon import checkpoint_storage as storage
from daemon.health import Alarm, JobHealth
from daemon.models import load_model, load_tokenizer
from daemon.paths import Paths
from daemon.versions import check_stack
from daemon.worker.episodes import EpisodeRunner, episode_metrics
from daemon.worker.prompts import any_tools, chat_messages, render_prompt, row_tools
from daemon.worker.reporting import Reporter, open_reporter, reports_over_http, work_dir
from daemon.worker.rewards import GraderReward, grader_time_limits
from daemon.worker.rollout import ToolRollout, rollout_dataset
from daemon.worker.tool_calls import tool_schemas
from daemon.worker.tool_runtime import ToolBox
from daemon.worker.validation import Validator, choose_rows
from daemon.worker_protocol import CHECKPOINT_STORAGE_ENV, FILES_DIR_ENV, FILES_URL_ENV, ControlFlags

SKIP_LOG_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss")


def rank_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def read_rows(path: str) -> list[dict[str, Any]]:
    """The JSONL rows of an imported (already validated) file, with `item` = every field but `messages`."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            data = json.loads(line)
            rows.append({"messages": data.get("messages") or [],
                         "item": {k: v for k, v in data.items() if k != "messages"}})
    return rows


def stored_path(file: api.SnapshotFile) -> str:
    """Where the store keeps a snapshot's dataset (every job created by this daemon records it).

    A worker away from the store (RFT_FILES_DIR set by its executor) finds it under the same file name there,
    or downloads it from RFT_FILES_URL (a cluster's URL storage).
    """
    if not file.path:
        raise FileNotFoundError(f"the job's snapshot records no stored path for file {file.id}")
    name = Path(file.path).name
    uploaded = os.environ.get(FILES_URL_ENV)
    if uploaded:  # URL storage: downloaded once into this node's scratch dir
        return str(storage.get_file(storage.join(uploaded, name), Path(work_dir()) / "files" / name,
                                    storage.options_from_env()))
    shipped = os.environ.get(FILES_DIR_ENV)
    return str(Path(shipped) / name) if shipped else file.path


def training_dataset(rows: list[dict[str, Any]], tokenizer: Any = None) -> Any:
    """Conversational `prompt` column (TRL wants `prompt`, not `messages`) + the item as JSON text.

    Rows with `tools` are rendered to text prompts through the chat template (with their tools), all rows alike.
    """
    from datasets import Dataset

    if tokenizer is not None and any_tools(rows):
        return Dataset.from_list([
            {"prompt": render_prompt(tokenizer, r["messages"], row_tools(r)),
             "item_json": json.dumps(r["item"], ensure_ascii=False)} for r in rows
        ])
    return Dataset.from_list([
        {"prompt": chat_messages(r["messages"]), "item_json": json.dumps(r["item"], ensure_ascii=False)}
        for r in rows
    ])


def lora_config(hp: api.ResolvedHyperparameters) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=hp.lora_r, lora_alpha=hp.lora_alpha, lora_dropout=hp.lora_dropout,
                      target_modules=hp.lora_target_modules, task_type="CAUSAL_LM", bias="none")


def per_device_batch(hp: api.ResolvedHyperparameters, world: int, micro_batch_divisor: int = 1) -> tuple[int, int]:
    """(per_device_train_batch_size, gradient_accumulation_steps): the global batch (batch_size x num_generations
    completions) split over the processes and the accumulation steps; `micro_batch_divisor` halves the micro-batch
    again after an out-of-memory retry, with the accumulation doubled so the global batch stays."""
    accum = hp.gradient_accumulation_steps * micro_batch_divisor
    per_process = max(1, hp.completions_per_step // max(1, world))
    while accum > 1 and per_process % accum:
        accum //= 2
    return max(1, per_process // accum), accum


def grpo_config(hp: api.ResolvedHyperparameters, out_dir: Path, world: int, micro_batch_divisor: int = 1) -> Any:
    from trl import GRPOConfig

    cpu = not hp.on_cuda
    per_device, accum = per_device_batch(hp, world, micro_batch_divisor)
    vllm: dict[str, Any] = {}
    if hp.use_vllm:
        vllm = {"vllm_mode": hp.vllm_mode, "vllm_enable_sleep_mode": hp.vllm_enable_sleep_mode}
        if hp.vllm_mode == "colocate":
            vllm["vllm_gpu_memory_utilization"] = hp.vllm_gpu_memory_utilization
            vllm["vllm_max_model_length"] = hp.max_prompt_length + hp.max_completion_length
        elif hp.vllm_server_base_url:
            vllm["vllm_server_base_url"] = hp.vllm_server_base_url
    return GRPOConfig(
        output_dir=str(out_dir), use_cpu=cpu, bf16=(hp.precision == "bf16" and not cpu),
        fp16=(hp.precision == "fp16" and not cpu), per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accum, num_generations=hp.num_generations,
        max_completion_length=hp.max_completion_length, temperature=hp.temperature, beta=hp.beta,
        loss_type=hp.loss_type, learning_rate=hp.learning_rate, max_steps=hp.max_steps, seed=hp.seed,
        data_seed=hp.seed, logging_steps=1, report_to="none", save_strategy="no", eval_strategy="no",
        gradient_checkpointing=hp.gradient_checkpointing, remove_unused_columns=False,
        dataloader_num_workers=0, log_completions=False, disable_tqdm=True, use_vllm=hp.use_vllm,
        ddp_find_unused_parameters=False if world > 1 else None, **vllm,
    )


def groups_per_step(hp: api.ResolvedHyperparameters, world: int) -> int:
    """Prompt groups one optimizer step samples (what frac_reward_zero_std is a share of)."""
    per_device = max(hp.num_generations, hp.completions_per_step // max(1, world))
    return max(1, per_device * max(1, world) * hp.gradient_accumulation_steps // hp.num_generations)


def checkpoint_name(step: int) -> str:
    return f"step-{step}"


class JobCallback(TrainerCallback):
    """Logs each step, validates on schedule, checkpoints, and honours cancel/pause at step boundaries."""

    def __init__(self, run: TrainingRun) -> None:
        self.run = run
        self.step_started = time.perf_counter()
        self.last_tokens: float | None = None
        self.pending_valid_s = 0.0
        self.last_valid: dict[int, float | None] = {}
        self.last_train_reward: float | None = None

    # --------------------------------------------------------------- steps

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        run = self.run
        if run.reporter is not None and run.resume_from is None and 0 not in run.validated_steps():
            self.validate(0, kw["model"])
        self.step_started = time.perf_counter()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.step_started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        run = self.run
        step = state.global_step
        self.step_wall = time.perf_counter() - self.step_started
        at_end = step >= state.max_steps
        if run.eval_interval and (step % run.eval_interval == 0 or at_end):
            if run.reporter is not None:
                self.validate(step, kw["model"])
            control.should_save = True
        action = run.stop_action()
        if action is not None:
            run.outcome = action
            control.should_training_stop = True
            if action == "paused":
                control.should_save = True

    def validate(self, step: int, model: Any) -> None:
        run = self.run
        if run.validator is None or run.reporter is None:
            return
        phase, run.phase, run.validating_step = run.phase, "validation", step
        rows, summary, seconds = run.validator.run(model)
        run.phase = phase
        mean = run.reporter.log_validation(step, rows, summary)
        self.last_valid[step] = mean
        if run.health is not None:
            run.health.validation(step, mean)
        self.pending_valid_s += seconds
        print(f"[validation] step {step}: mean reward {mean if mean is None else round(mean, 4)} "
              f"over {len(rows)} rows in {seconds:.1f}s", flush=True)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        run = self.run
        if not logs or any(k in logs for k in SKIP_LOG_KEYS):
            return
        step = state.global_step
        tallies, episodes = [run.reward.take()], run.rollout.take_episodes() if run.rollout is not None else []
        if run.world > 1:  # each rank graded (and played) its share of the step: rank 0 reports them all
            gathered: list[Any] | None = [None] * run.world if run.rank == 0 else None
            torch.distributed.gather_object((tallies[0], episodes), gathered, dst=0)
            if gathered is not None:
                tallies = [g[0] for g in gathered]
                episodes = [e for g in gathered for e in g[1]]
        samples, grader_metrics = run.reward.summarize(tallies)
        values: dict[str, Any] = {k: v for k, v in logs.items() if isinstance(v, (int, float)) or v is None}
        values.update(grader_metrics)
        if run.rollout is not None:
            values.update(episode_metrics(episodes))
        wall = getattr(self, "step_wall", None) or (time.perf_counter() - self.step_started)
        values[metrics.STEP_WALL_S] = wall
        timing = run.take_timing()
        generate_s = timing.get("generate_s", 0.0)
        values[metrics.SAMPLING_S] = max(0.0, generate_s - grader_metrics.get(metrics.GRADING_S, 0.0))
        values[metrics.TRAINING_S] = max(0.0, wall - generate_s)
        values[metrics.VALIDATION_S] = self.pending_valid_s
        self.pending_valid_s = 0.0
        tokens = logs.get(metrics.NUM_TOKENS)
        if isinstance(tokens, (int, float)):
            if self.last_tokens is not None and wall > 0:
                values[metrics.TOKENS_PER_S] = (tokens - self.last_tokens) / wall
            elif wall > 0:
                values[metrics.TOKENS_PER_S] = tokens / max(1, step) / wall
            self.last_tokens = tokens
        self.last_train_reward = values.get(metrics.TRAIN_REWARD)
        if run.reporter is None:
            return
        if run.health is not None:
            run.health.add_signals(values, step)
        run.reporter.log_step(step, values, samples=samples, total_steps=state.max_steps,
                              trained_tokens=int(tokens) if isinstance(tokens, (int, float)) else None)
        if run.health is not None:
            run.health.step(step, values)
            if run.world == 1 and run.health.stop is not None and run.outcome == "succeeded" \
                    and step < state.max_steps:
                # one process: act on a critical alarm in this very step (save happens right after on_log)
                run.outcome, run.stop_detail = run.health_stop_detail()
                control.should_training_stop = True
                control.should_save = control.should_save or run.outcome == "paused"
        if step % 10 == 0 or step == 1:
            print(f"[step {step}/{state.max_steps}] reward {values.get(metrics.TRAIN_REWARD)} wall {wall:.2f}s",
                  flush=True)

    # --------------------------------------------------------------- checkpoints

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        run = self.run
        step = state.global_step
        src = Path(args.output_dir) / f"checkpoint-{step}"
        if run.world > 1:
            torch.distributed.barrier()
        if run.reporter is not None and src.exists():
            dst = Path(args.output_dir) / checkpoint_name(step)
            if dst.exists():
                shutil.rmtree(dst)
            os.rename(src, dst)
            run.last_checkpoint = str(dst)  # local: an out-of-memory retry resumes from it
            metrics = {"step": step, "valid_reward_mean": self.last_valid.get(step),
                       "train_reward_mean": self.last_train_reward}
            location = storage.publish(dst, run.checkpoint_storage, run.job_id, run.storage_options)
            run.reporter.add_checkpoint(step, location, metrics)
            run.prune_checkpoints()
        if run.world > 1:
            torch.distributed.barrier()


class TrainingRun:
    """Everything one worker process holds for a job."""

    def __init__(self, job_id: str, home: str | None, flags: ControlFlags) -> None:
        self.job_id = job_id
        self.remote = reports_over_http()  # a cluster worker: no RFT_HOME, its scratch dir instead
        self.scratch = Path(work_dir())
        self.paths = Paths.resolve(home if home and not self.remote else self.scratch / "home")
        self.checkpoint_storage = os.environ.get(CHECKPOINT_STORAGE_ENV) or None
        self.storage_options = storage.options_from_env()  # URL storage: handed over like the report token
        self.rank, self.world = rank_info()
        self.flags = flags  # installed by __main__ before the heavy imports
        self.reporter: Reporter | None = open_reporter(job_id, home=home) if self.rank == 0 else None
        reader = self.reporter or open_reporter(job_id, rank=self.rank, home=home)
        job = reader.job()
        self.spec = reader.spec()
        if reader is not self.reporter:
            reader.close()
        self.check_stack()
        self.resume_from: str | None = job.resume_from or None
        self.oom_retries = job.oom_retries  # > 0: the daemon relaunched us smaller after an out-of-memory error
        if self.resume_from and not storage.exists(self.resume_from, self.storage_options):
            raise FileNotFoundError(f"checkpoint to resume from is gone: {self.resume_from}")
        if self.resume_from:
            self.resume_from = storage.fetch(self.resume_from, self.scratch / "resume", self.storage_options)
        self.hp: api.ResolvedHyperparameters = self.spec.hyperparameters
        self.eval_interval = self.hp.eval_interval
        self.outcome = "succeeded"
        self.stop_detail: str | None = None
        self._timing: dict[str, float] = {}
        self.validator: Validator | None = None
        self.rollout: ToolRollout | None = None
        self.toolbox: ToolBox | None = None
        self.health: JobHealth | None = None  # rank 0: health signals and alarms (daemon/health.py)
        self.last_checkpoint: str | None = None
        self.phase = "starting"  # loading | training | generation | forward | backward | validation
        self.validating_step = 0
        self.micro_batch = 0
        self.device: Any = None

    def check_stack(self) -> None:
        """This Python against the snapshot's versions (a cluster's Python is the user's): a missing library
        fails now with the fix, a different version is a warning event (daemon/versions.py)."""
        stack = check_stack(self.spec.versions)
        failure = stack.failure()
        if failure:
            raise RuntimeError(failure)
        warning = stack.warning()
        if warning and self.reporter is not None:
            print(f"[worker] {warning}", flush=True)
            self.reporter.event(warning, level="warn", data={"versions": dict(stack.here),
                                                            "snapshot_versions": dict(self.spec.versions)})

    # --------------------------------------------------------------- control

    def stop_action(self) -> str | None:
        """'cancelled' / 'paused' / None, agreed by every rank (a signal or the job row's request)."""
        code = {"cancelled": 2, "paused": 1, None: 0}[self.flags.requested()]
        if self.reporter is not None and code == 0:
            requested = self.reporter.requested_action()
            code = 2 if requested == "cancel" else 1 if requested == "pause" else 0
        if code == 0 and self.health is not None and self.health.stop is not None:
            outcome, self.stop_detail = self.health_stop_detail()  # a critical alarm with on_alarm pause/cancel
            code = 2 if outcome == "cancelled" else 1
        if self.world > 1:
            t = torch.tensor([code], dtype=torch.int64, device=self.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            code = int(t.item())
        return {0: None, 1: "paused", 2: "cancelled"}[code]

    def health_stop_detail(self) -> tuple[str, str]:
        """The outcome a critical alarm asks for, and the reason the job's status will give."""
        assert self.health is not None and self.health.stop is not None
        outcome, reason = self.health.stop
        return outcome, reason + ("; checkpointed, resume continues from here" if outcome == "paused" else "")

    def record_alarm(self, alarm: Alarm) -> bool:
        """The health monitor's sink: through the reporter interface, and a line in the job log."""
        assert self.reporter is not None
        state = "cleared" if alarm.cleared else f"{alarm.severity}, action {alarm.action}"
        print(f"[alarm] {alarm.name}{' ' + alarm.grader if alarm.grader else ''} at step {alarm.step} ({state}): "
              f"{alarm.message}", flush=True)
        return self.reporter.alarm(alarm.as_dict())

    def take_timing(self) -> dict[str, float]:
        t, self._timing = self._timing, {}
        return t

    def validated_steps(self) -> set[int]:
        assert self.reporter is not None
        return self.reporter.validated_steps()

    def prune_checkpoints(self) -> None:
        """Delete (files and rows) the checkpoints the store's one rule does not keep (best 3 + latest)."""
        assert self.reporter is not None
        for c in self.reporter.checkpoints_to_delete():
            if c.path:
                storage.remove(c.path, self.storage_options)
                if storage.is_url(c.path):  # the local copy it was uploaded from
                    shutil.rmtree(self.checkpoint_dir() / c.path.rstrip("/").rsplit("/", 1)[-1], ignore_errors=True)
            self.reporter.mark_checkpoint_deleted(c.id)

    def checkpoint_dir(self) -> Path:
        """Where the trainer saves: the job dir (local), a shared-path storage, or scratch (URL storage)."""
        if self.checkpoint_storage and not storage.is_url(self.checkpoint_storage):
            return Path(self.checkpoint_storage) / self.job_id
        if self.remote:
            return self.scratch / "checkpoints"
        return self.paths.job_dir(self.job_id) / "checkpoints"

    # --------------------------------------------------------------- run

    def execute(self) -> str:
        hp, spec = self.hp, self.spec
        threads = os.environ.get("RFT_TORCH_THREADS")
        if threads:
            torch.set_num_threads(int(threads))
        elif not hp.on_cuda:
            # half the cores per rank: on a shared CPU, oversubscribed torch threads are many times slower
            torch.set_num_threads(max(1, (os.cpu_count() or 2) // (2 * self.world)))
        torch.manual_seed(hp.seed)
        self.tokenizer = load_tokenizer(spec.model_ref(), self.paths, progress=self.rank == 0)
        self.train_rows = read_rows(stored_path(spec.training_file))
        self.valid_rows = read_rows(stored_path(spec.validation_file)) if spec.validation_file else []
        self.reward = GraderReward(spec.grader, name=spec.grader_name, samples_per_step=hp.samples_per_step,
                                   seed=hp.seed)
        if self.reporter is not None:
            self.health = JobHealth(spec.guardrails, groups_per_step(hp, self.world), self.record_alarm,
                                    grader_time_limits(spec.grader),
                                    history=self.reporter.health_history() if self.resume_from else None)
        if spec.tools:  # agent RFT: the job's tools, shared by the training and validation episodes
            self.toolbox = ToolBox(spec.tools)
        try:
            trainer = self.build_trainer(micro_batch_divisor=2 ** self.oom_retries)
            self.flags.training_started()
            early = self.stop_action()  # asked while we loaded: stop now, nothing new to save
            if early is not None:
                self.stop_detail = f"{early} before training started"
                print(f"[worker] {self.stop_detail}", flush=True)
                return early
            try:
                trainer.train(resume_from_checkpoint=self.resume_from)
            except torch.OutOfMemoryError as exc:
                retried = self.oom_retries > 0
                report = self.oom_report(exc, trainer, retried=retried)
                if hp.on_oom != "retry_smaller" or retried or self.world > 1:
                    # several processes: the ranks cannot agree on a retry (the others wait in a collective for
                    # this one), so the daemon relaunches torchrun smaller from the last checkpoint (scheduler.py)
                    raise OutOfMemoryFailure(report) from exc
                del trainer
                trainer = self.retry_smaller(report)
                try:
                    trainer.train(resume_from_checkpoint=self.resume_from)
                except torch.OutOfMemoryError as again:
                    raise OutOfMemoryFailure(self.oom_report(again, trainer, retried=True)) from again
        finally:
            self.reward.close()
            if self.toolbox is not None:
                self.toolbox.close()
        return self.outcome

    def build_trainer(self, micro_batch_divisor: int) -> Any:
        """Load the model (4-bit when asked) and wrap it in GRPOTrainer + LoRA, with our callback and timing."""
        from trl import GRPOTrainer

        hp, spec = self.hp, self.spec
        model_id = spec.model_ref()
        tokenizer = self.tokenizer
        out_dir = self.checkpoint_dir()
        out_dir.mkdir(parents=True, exist_ok=True)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(hp.precision, torch.float32)
        if not hp.on_cuda:
            dtype = torch.float32
        self.phase = "loading"
        model = load_model(model_id, self.paths, dtype=dtype, quantization=hp.quantization)
        args = grpo_config(hp, out_dir, self.world, micro_batch_divisor)
        self.micro_batch = int(args.per_device_train_batch_size)
        reward_funcs: list[Any] = [self.reward]  # TRL's hint wants list[float | None] back (lists are invariant)
        if self.toolbox is not None:  # agent RFT: multi-turn episodes (daemon/worker/rollout.py says why)
            runner = EpisodeRunner(tokenizer, self.toolbox, hp.max_episode_steps, hp.max_completion_length,
                                   rollout_prefix=f"{self.job_id}-train-{self.rank}")
            self.rollout = ToolRollout(runner)
            dataset = rollout_dataset(self.train_rows)
        else:
            dataset = training_dataset(self.train_rows, tokenizer)
        trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset,
                              processing_class=tokenizer, peft_config=lora_config(hp), callbacks=[JobCallback(self)],
                              rollout_func=self.rollout)
        self.device = trainer.accelerator.device
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # our callback prints a compact line; the store has every number
        self._instrument(trainer)
        if self.rollout is not None and getattr(trainer, "_generate_and_score_completions", None) is None:
            raise RuntimeError("this TRL has no _generate_and_score_completions: tool rollouts cannot see their rows")
        if self.valid_rows and hp.eval_samples > 0:
            idx = choose_rows(self.valid_rows, hp.eval_samples, hp.seed)
            valid_runner = None if self.toolbox is None else EpisodeRunner(
                tokenizer, self.toolbox, hp.max_episode_steps, hp.max_completion_length,
                rollout_prefix=f"{self.job_id}-valid")
            engine = getattr(trainer, "vllm_generation", None) if hp.use_vllm and self.world == 1 else None
            self.validator = Validator(self.valid_rows, idx, tokenizer, self.reward, hp.max_completion_length,
                                       device=self.device, runner=valid_runner, vllm_generation=engine)
        if self.reporter is not None and micro_batch_divisor == 2 ** self.oom_retries:
            assert trainer.model is not None  # GRPOTrainer always holds the model it was given
            trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
            total = sum(p.numel() for p in trainer.model.parameters())
            where = f"resuming from {self.resume_from}" if self.resume_from else "from the base model"
            generation = f"vLLM ({hp.vllm_mode})" if hp.use_vllm else "HF generate"
            self.reporter.started(hp.max_steps, message=(
                f"Training {model_id} with LoRA r={hp.lora_r} ({trainable:,} of {total:,} parameters trainable) "
                f"on {len(self.train_rows)} rows, {self.world} process(es), {hp.precision}"
                f"{', 4-bit base' if hp.quantization == '4bit' else ''}, generation by {generation}, "
                f"micro-batch {args.per_device_train_batch_size} x {args.gradient_accumulation_steps}, {where}"))
            from graders import sandbox_warning  # python grader sandbox off (or missing): say so at job start

            if warning := sandbox_warning(spec.grader):
                self.reporter.event(warning, level="warn")
            if notice := tools_notice(spec, self.train_rows):
                self.reporter.event(notice, level="info" if spec.tools and "sandbox" not in notice else "warn")
        self.phase = "training"
        return trainer

    def retry_smaller(self, report: dict[str, Any]) -> Any:
        """`on_oom: retry_smaller`: once, from the last checkpoint, with half the micro-batch (accumulation x 2)."""
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        latest = self.last_checkpoint if self.last_checkpoint and Path(self.last_checkpoint).is_dir() else None
        self.resume_from = latest or self.resume_from
        where = f"the checkpoint of step {Path(latest).name.removeprefix('step-')}" if latest else \
            "the start (no checkpoint yet)"
        if self.reporter is not None:
            self.reporter.event(f"{report['message']} Retrying once from {where} with half the micro-batch "
                                f"({max(1, self.micro_batch // 2)} completions, accumulation doubled: same global "
                                "batch).", level="warn", data={"out_of_memory": report, "retry": True})
        print(f"[worker] out of memory; retrying from {where} with half the micro-batch", flush=True)
        return self.build_trainer(micro_batch_divisor=2)

    def oom_report(self, exc: BaseException, trainer: Any, retried: bool = False) -> dict[str, Any]:
        """What ran out, where, how much was in use, what the estimate said, and what to change."""
        phase = self.phase
        step = self.validating_step if phase == "validation" else int(trainer.state.global_step) + 1
        peak, device = peak_memory(self.device)
        estimate = self.spec.memory_estimate
        suggestion = oom_suggestion(phase, self.hp, estimate, self.micro_batch, retried)
        gib = 2**30
        said = (f"; the estimate was {estimate.total_bytes / gib:.1f} GiB ({estimate.verdict})" if estimate else
                "; no estimate for this model")
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        message = (f"out of memory at step {step} during {phase}{' (after the smaller retry)' if retried else ''}: "
                   f"peak {peak / gib:.2f} GiB on {device}{said}. Suggestion: {suggestion}. ({first})")
        return {"message": message, "step": step, "phase": phase, "peak_bytes": peak, "device": device,
                "micro_batch": self.micro_batch, "estimate_total_bytes": estimate.total_bytes if estimate else None,
                "suggestion": suggestion, "retried": retried}

    def _instrument(self, trainer: Any) -> None:
        """Time the sampling phase (generation + scoring) of each step, and name the phase each call runs in
        (generation / forward / backward) so an out-of-memory error says where it happened."""
        run = self
        inner = getattr(trainer, "_generate_and_score_completions", None)
        if inner is not None:
            def timed(*a: Any, **kw: Any) -> Any:
                if run.rollout is not None and a and isinstance(a[0], list):
                    run.rollout.inputs = a[0]  # the rollout_func reads each prompt's item (tools, fields) here
                t = time.perf_counter()
                run.phase = "generation"
                try:
                    return inner(*a, **kw)
                finally:
                    run._timing["generate_s"] = run._timing.get("generate_s", 0.0) + time.perf_counter() - t

            trainer._generate_and_score_completions = timed
        compute_loss = trainer.compute_loss

        def forward(*a: Any, **kw: Any) -> Any:
            run.phase = "forward"
            return compute_loss(*a, **kw)

        trainer.compute_loss = forward
        backward = trainer.accelerator.backward

        def backward_phase(*a: Any, **kw: Any) -> Any:
            run.phase = "backward"
            return backward(*a, **kw)

        trainer.accelerator.backward = backward_phase

    def fine_tuned_model_name(self) -> str:
        suffix = self.spec.suffix
        return f"ft:{self.spec.model.id}:local{':' + suffix if suffix else ''}:{self.job_id}"


def tools_notice(spec: api.JobSnapshot, rows: list[dict[str, Any]]) -> str | None:
    """One line at job start on how tools run: which ones, or that the rows' tools will never run."""
    declared = sorted({name for r in rows for name in tool_schemas(row_tools(r))})
    if spec.tools:
        kinds = ", ".join(f"{name} ({t.type})" for name, t in sorted(spec.tools.items()))
        line = (f"Agent RFT: multi-turn episodes (max_episode_steps={spec.hyperparameters.max_episode_steps}) "
                f"with tools {kinds}")
        if any(isinstance(t, api.PythonToolRuntime) for t in spec.tools.values()):
            from graders import sandbox_mode

            mode = sandbox_mode()
            if mode == "off":
                line += "; python tools run WITHOUT the sandbox (RFT_SANDBOX=off), with this user's access"
            elif mode != "bubblewrap":
                line += f"; python tools will be refused (every call an error): the sandbox is {mode}"
        return line
    if declared:
        return (f"The rows declare tools ({', '.join(declared[:8])}) but the job says how to run none "
                "(method.reinforcement.tools): single-turn rollouts, no tool ever runs")
    return None


class OutOfMemoryFailure(RuntimeError):
    """A CUDA (or CPU) out-of-memory error, explained: its message is the job's failure message."""

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__(report["message"])
        self.report = report


def peak_memory(device: Any) -> tuple[int, str]:
    """(peak bytes, device): the CUDA allocator's peak on a GPU, the process's peak resident memory on CPU."""
    if device is not None and getattr(device, "type", "") == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), f"cuda:{device.index or 0}"
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "cpu"


def oom_suggestion(phase: str, hp: api.ResolvedHyperparameters, estimate: api.MemoryEstimate | None,
                   micro_batch: int, retried: bool) -> str:
    """The change most likely to fix it: the estimate's own fix when it had one, else by phase."""
    if estimate is not None and estimate.suggestion and not estimate.fits:
        return estimate.suggestion
    if phase == "generation":
        fix = ("lower vllm_gpu_memory_utilization or turn on vllm_enable_sleep_mode" if hp.use_vllm else
               "lower batch_size or max_completion_length (the KV cache of a step's completions grows with both)")
    elif phase == "validation":
        fix = "lower eval_samples or max_completion_length (validation generates up to 64 rows at once)"
    elif micro_batch > 1:
        fix = (f"set gradient_accumulation_steps to {2 * hp.gradient_accumulation_steps} (micro-batch "
               f"{micro_batch} -> {max(1, micro_batch // 2)}, same global batch)"
               + ("" if hp.gradient_checkpointing else " or gradient_checkpointing: true"))
    else:
        fix = "gradient_checkpointing: true, quantization: 4bit, or a shorter max_completion_length"
    if hp.on_oom != "retry_smaller" and not retried and phase != "validation":
        fix += "; or on_oom: retry_smaller to retry once with half the micro-batch"
    return fix


def oom_message(exc: BaseException) -> str:
    return (f"out of memory: {str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}. Lower batch_size, "
            "num_generations or max_completion_length, or use a smaller model.")
