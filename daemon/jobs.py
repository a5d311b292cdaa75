"""Creating a job: check every reference, resolve hyperparameters, and freeze a snapshot of it all."""

from __future__ import annotations

import secrets
import time
from typing import Any

from daemon import __version__, api, prompt_lengths
from daemon.clusters import ClusterConfig, dump_placement, placement
from daemon.devices import cpu_memory
from daemon.errors import ApiError, bad_request
from daemon.health import check_guardrails
from daemon.hyperparams import DeviceInfo, check_resolved, resolve_hyperparameters
from daemon.memory_estimate import estimate
from daemon.model_shape import ModelShape, ShapeUnavailable, UnknownArchitecture, shape_for
from daemon.models import ModelNotFound, check_model_ref
from daemon.paths import Paths
from daemon.store import Store, dumps, new_job_id
from daemon.versions import library_versions


def check_model(model: str) -> api.SnapshotModel:
    """`builtin:NAME`, a local directory, or a hub id (`org/name[@revision]`), checked by the one model check
    (`daemon.models.check_model_ref`); returns what to record, or a 400 naming `model`."""
    try:
        ref = check_model_ref(model)
    except ModelNotFound as e:
        raise bad_request(str(e), param="model", code="model_not_found") from None
    if ref.source == "builtin":
        return api.SnapshotModel(id=ref.id, source="builtin", revision=__version__)
    if ref.source == "local":
        return api.SnapshotModel(id=ref.id, source="local")
    return api.SnapshotModel(id=ref.id, source="hub", revision=ref.revision or "main")


def _file_ref(store: Store, file_id: str, param: str) -> api.SnapshotFile:
    row = store.get_file_row(file_id)
    if row is None:
        raise bad_request(f"No file with id '{file_id}'. Upload it first (POST /v1/files).", param=param,
                          code="file_not_found")
    return api.SnapshotFile(id=row["id"], sha256=row["sha256"], rows=row["rows"], filename=row["filename"],
                            bytes=row["bytes"], path=row["path"])


def validate_grader_spec(grader: dict[str, Any], param: str = "method.reinforcement.grader") -> None:
    """400 naming `param` with every problem the graders package finds in the spec."""
    import graders

    errors = graders.validate_grader(grader)
    if errors:
        raise bad_request(f"Invalid grader: {'; '.join(errors)}", param=param, code="invalid_grader")


def check_files(store: Store, paths: Paths, req: api.JobCreateRequest, train: api.SnapshotFile,
                valid: api.SnapshotFile | None) -> None:
    """Dataset checks that must refuse the job up front (bad rows, grader fields missing, overlap)."""
    from daemon import files

    problem = files.check_job_files(store, paths, train.id, valid.id if valid else None,
                                    req.method.reinforcement.grader, allow_overlap=req.allow_overlap)
    if problem is not None:
        raise problem


def build_snapshot(store: Store, paths: Paths, req: api.JobCreateRequest, where: api.JobPlacement | None = None,
                   check_data: bool = True) -> api.JobSnapshot:
    """Everything the job depends on, checked and resolved; raises ApiError (400) naming the offending parameter.

    `check_data=False` (the memory estimate alone) skips reading the datasets' rows: only their counts matter.
    """
    if req.hyperparameters:
        raise bad_request("Top-level `hyperparameters` is deprecated; put them in "
                          "method.reinforcement.hyperparameters.", param="hyperparameters")
    model = check_model(req.model)
    train = _file_ref(store, req.training_file, "training_file")
    valid = _file_ref(store, req.validation_file, "validation_file") if req.validation_file else None
    if valid and valid.id == train.id and not req.allow_overlap:
        raise bad_request("The validation file is the training file; validation must be held-out data "
                          "(pass allow_overlap to do it anyway).", param="validation_file", code="overlap")
    grader = req.method.reinforcement.grader
    validate_grader_spec(grader)
    if check_data:
        check_files(store, paths, req, train, valid)
    seed = req.seed if req.seed is not None else secrets.randbelow(2**31)
    hp = req.method.reinforcement.hyperparameters
    device = DeviceInfo.detect() if where is None else cluster_device(where)
    shape, shape_error = model_shape(req.model, paths)
    longest_prompt = prompt_lengths.longest(req.model, train.path, train.sha256, paths) if shape is not None else None
    resolved = resolve_hyperparameters(hp, model=req.model, train_rows=train.rows or 0,
                                       valid_rows=(valid.rows if valid else 0) or 0, seed=seed, device=device,
                                       shape=shape, prompt_tokens=longest_prompt)
    if where is not None:
        resolved = cluster_processes(resolved, hp, where)
        if hp.use_vllm == "auto" and resolved.use_vllm:  # the cluster's environment is not probed from here
            resolved = resolved.model_copy(update={"use_vllm": False, "auto_reasons": {
                **resolved.auto_reasons, "use_vllm": "off: a cluster job (set use_vllm: true if its nodes have vLLM)"}})
    if req.method.reinforcement.tools and hp.use_vllm == "auto" and resolved.use_vllm:
        resolved = resolved.model_copy(update={"use_vllm": False, "auto_reasons": {
            **resolved.auto_reasons, "use_vllm": "off: tool episodes generate with the training model"}})
    if req.method.reinforcement.tools and resolved.use_vllm:
        raise bad_request("use_vllm is not supported with tools yet: tool episodes generate with the training "
                          "model (set use_vllm to false or \"auto\")",
                          param="method.reinforcement.hyperparameters.use_vllm")
    for param, message in check_resolved(resolved):
        raise bad_request(message, param=f"method.reinforcement.hyperparameters.{param}")
    guardrails = req.guardrails or api.Guardrails()
    for param, message in check_guardrails(guardrails):
        raise bad_request(f"guardrails.{param}: {message}", param=f"guardrails.{param}", code="invalid_guardrails")
    estimate = None
    if shape is not None:
        prompt = prompt_lengths.choose(req.model, train.path, train.sha256, resolved.max_prompt_length, paths)
        estimate = memory_estimate(req.model, shape, resolved, device, prompt)
    return api.JobSnapshot(
        model=model, training_file=train, validation_file=valid, grader=grader, hyperparameters=resolved,
        hyperparameters_requested=hp.model_dump(exclude_none=True), seed=seed, versions=library_versions(),
        device=api.SnapshotDevice(kind=device.kind, count=device.count), suffix=req.suffix,
        created_at=int(time.time()), tools=req.method.reinforcement.tools or {}, guardrails=guardrails,
        memory_estimate=estimate, memory_estimate_error=shape_error,
    )


def model_shape(model: str, paths: Paths) -> tuple[ModelShape | None, str | None]:
    """The model's shape for the estimate, or why there is none (never an error: the job can still run)."""
    try:
        return shape_for(model, paths.home), None
    except (ShapeUnavailable, UnknownArchitecture, ValueError) as e:
        return None, str(e)
    except ApiError as e:  # the meta-device helper failed or timed out
        return None, f"no estimate: {e.message}"


def memory_estimate(model: str, shape: ModelShape, hp: api.ResolvedHyperparameters, device: DeviceInfo,
                    prompt: prompt_lengths.PromptLengthChoice | None = None) -> api.MemoryEstimate:
    """The fit estimate against the devices detected now (the GPUs' free memory, or the RAM on CPU)."""
    free, total = cpu_memory()
    return estimate(model, shape, hp, list(device.gpus), free, total, prompt)


def refuse_if_too_big(snapshot: api.JobSnapshot, force: bool) -> None:
    """Create refuses a job that clearly will not fit (unless `force`), with the breakdown and the cheapest fix."""
    e = snapshot.memory_estimate
    if force or e is None or not e.clearly_does_not_fit:
        return
    raise bad_request(f"This job will not fit in memory: {e.verdict}. Estimate per device: {breakdown_text(e)}. "
                      "Change the settings, or pass force (--force) to try anyway.", param="model",
                      code="does_not_fit")


def breakdown_text(e: api.MemoryEstimate) -> str:
    gib = 2**30
    parts = [("weights", e.weights_bytes), ("LoRA", e.lora_bytes), ("optimizer", e.optimizer_bytes),
             ("activations", e.activations_bytes), ("generation", e.generation_bytes), ("overhead", e.overhead_bytes)]
    free = f"{e.device_free_bytes / gib:.1f} GiB free" if e.device_free_bytes is not None else "free unknown"
    return (", ".join(f"{name} {n / gib:.2f} GiB" for name, n in parts)
            + f" = {e.total_bytes / gib:.2f} GiB on {e.device} ({free})")


def cluster_device(where: api.JobPlacement) -> DeviceInfo:
    """The cluster's devices decide precision and process count, not this machine's."""
    if where.gpus_per_node > 0:
        return DeviceInfo("cuda", where.nodes * where.gpus_per_node, None)
    return DeviceInfo("cpu", 1, None)


def cluster_processes(resolved: api.ResolvedHyperparameters, hp: api.ReinforcementHyperparameters,
                      where: api.JobPlacement) -> api.ResolvedHyperparameters:
    """A cluster job runs nodes x processes_per_node ranks; an explicit num_processes must agree."""
    world = where.nodes * where.processes_per_node
    if hp.num_processes != "auto" and hp.num_processes != world:
        raise bad_request(f"num_processes {hp.num_processes} disagrees with the cluster placement: {where.nodes} "
                          f"node(s) x {where.processes_per_node} process(es) = {world}",
                          param="method.reinforcement.hyperparameters.num_processes")
    return resolved.model_copy(update={"num_processes": world})


def build_job(store: Store, paths: Paths, req: api.JobCreateRequest,
              clusters: ClusterConfig | None = None) -> dict[str, Any]:
    """The jobs-table row for a new job: the request's columns plus its snapshot (see `build_snapshot`)."""
    job_id = new_job_id()
    where = None
    if req.cluster is not None:
        if clusters is None:
            raise bad_request("this daemon has no clusters configured", param="cluster", code="cluster_not_found")
        cluster = clusters.find(req.cluster)
        if cluster is None:
            known = ", ".join(c.name for c in clusters.list()) or "none yet: rft-tui clusters add NAME ..."
            raise bad_request(f"No cluster named {req.cluster!r} (configured: {known})", param="cluster",
                              code="cluster_not_found")
        where = placement(cluster, req, job_id)
    elif req.nodes is not None or req.gpus_per_node is not None:
        raise bad_request("nodes and gpus_per_node apply to cluster jobs; name the cluster too",
                          param="nodes" if req.nodes is not None else "gpus_per_node")
    snapshot = build_snapshot(store, paths, req, where)
    refuse_if_too_big(snapshot, req.force)
    requested = snapshot.hyperparameters_requested
    method: dict[str, Any] = {"type": "reinforcement",
                              "reinforcement": {"grader": snapshot.grader, "hyperparameters": requested}}
    if snapshot.tools:
        method["reinforcement"]["tools"] = {name: t.model_dump() for name, t in snapshot.tools.items()}
    return {
        "id": job_id, "created_at": snapshot.created_at, "status": api.JobStatus.validating_files.value,
        "model": req.model, "training_file": snapshot.training_file.id,
        "validation_file": snapshot.validation_file.id if snapshot.validation_file else None,
        "seed": snapshot.seed, "suffix": req.suffix, "metadata": dumps(req.metadata), "method": dumps(method),
        "hyperparameters": dumps(requested), "resolved_hyperparameters": snapshot.hyperparameters.model_dump_json(),
        "snapshot": snapshot.model_dump_json(), "total_steps": snapshot.hyperparameters.max_steps,
        "cluster": where.name if where else None, "cluster_placement": dump_placement(where) if where else None,
    }
