"""`rft-tui clusters add|list|show|test|remove`: Ray and Slurm clusters, configured once, stored by the daemon."""

from __future__ import annotations

import json
from typing import Any

import click

from daemon import api
from rft_tui.commands.jobs import typed_request
from rft_tui.context import CliContext, pass_ctx
from rft_tui.output import fmt_time, handle_errors, json_option, print_json, print_kv, print_table


@click.group("clusters")
def group() -> None:
    """Ray and Slurm clusters a job can run on (jobs create --cluster NAME)."""


@group.command()
@click.argument("name")
@click.option("--ray", "ray_address", default=None, metavar="http://HEAD:8265", help="A Ray cluster's job server.")
@click.option("--slurm", is_flag=True, help="A Slurm cluster (sbatch here, or through --ssh).")
@click.option("--ssh", default=None, metavar="[USER@]LOGIN_HOST[:PORT]",
              help="Slurm: run sbatch/squeue/scancel over ssh.")
@click.option("--ssh-options", default=None, metavar="'OPTS'",
              help="Slurm over --ssh: extra ssh arguments, e.g. '-i ~/.ssh/key' or '-F ~/.ssh/config.hpc'.")
@click.option("--storage", required=True, metavar="PATH|URL",
              help="Where jobs keep files and checkpoints: a path both the cluster and this daemon reach, or an "
                   "fsspec URL (s3://bucket/prefix; Ray clusters).")
@click.option("--storage-options", "storage_options", default=None, metavar="JSON|@FILE",
              help="fsspec options for a URL storage, as JSON or @file.json (a file keeps secrets out of your "
                   "shell history), e.g. '{\"client_kwargs\": {\"endpoint_url\": \"http://minio:9000\"}}'.")
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True, help="Default nodes per job.")
@click.option("--gpus-per-node", type=click.IntRange(min=0), default=0, show_default=True,
              help="Default GPUs per node (0: CPU processes).")
@click.option("--processes-per-node", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes per node when --gpus-per-node is 0.")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--account", default=None, help="Slurm account.")
@click.option("--time-limit", default=None, metavar="[D-]HH:MM:SS", help="Slurm time limit.")
@click.option("--python", default=None, metavar="PATH", help="Python on the cluster's nodes (with rft-tui's deps).")
@click.option("--report-url", default=None, metavar="URL",
              help="This daemon's URL as the cluster sees it (default: from daemon --tcp).")
@click.option("--replace", is_flag=True, help="Replace a cluster of the same name.")
@json_option
@pass_ctx
@handle_errors
def add(obj: CliContext, name: str, ray_address: str | None, slurm: bool, ssh: str | None, ssh_options: str | None,
        storage: str, nodes: int, gpus_per_node: int, processes_per_node: int, partition: str | None,
        account: str | None, time_limit: str | None, python: str | None, report_url: str | None, replace: bool,
        as_json: bool, storage_options: str | None = None) -> None:
    """Add a cluster: `--ray http://HEAD:8265` or `--slurm [--ssh LOGIN_HOST]`, with its defaults."""
    if bool(ray_address) == slurm:
        raise click.UsageError("give exactly one of --ray ADDRESS or --slurm")
    if ssh and not slurm:
        raise click.UsageError("--ssh is for Slurm clusters (--slurm)")
    if ssh_options and not ssh:
        raise click.UsageError("--ssh-options needs --ssh")
    fields: dict[str, Any] = {
        "name": name, "kind": "slurm" if slurm else "ray", "address": ray_address, "ssh": ssh,
        "ssh_options": ssh_options, "storage": storage, "nodes": nodes, "gpus_per_node": gpus_per_node,
        "processes_per_node": processes_per_node,
        "partition": partition, "account": account, "time_limit": time_limit, "python": python,
        "report_url": report_url, "replace": replace}
    if storage_options is not None:
        fields["storage_options"] = _json_option(storage_options, "--storage-options")
    cluster = obj.client().add_cluster(typed_request(api.ClusterCreateRequest, fields))
    if as_json:
        print_json(cluster)
        return
    click.echo(f"Added {cluster.kind} cluster {cluster.name}; check it with: rft-tui clusters test {cluster.name}")


def _json_option(value: str, flag: str) -> dict[str, Any]:
    """A JSON object given inline or as @FILE; a bad one is a usage error naming the file and position."""
    where = flag
    if value.startswith("@"):
        where = value[1:]
        try:
            with open(where, encoding="utf-8") as f:
                value = f.read()
        except OSError as e:
            raise click.BadParameter(f"cannot read {where}: {e.strerror}", param_hint=flag) from None
    try:
        data = json.loads(value)
    except ValueError as e:
        raise click.BadParameter(f"{where} is not JSON: {e}", param_hint=flag) from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{where} must hold a JSON object", param_hint=flag)
    return data


def _where(c: api.Cluster) -> str:
    if c.kind == "ray":
        return c.address or "-"
    return f"ssh {c.ssh}" + (f" {c.ssh_options}" if c.ssh_options else "") if c.ssh else "this machine"


def _per_node(d: api.ClusterDefaults) -> str:
    return f"{d.gpus_per_node} GPU(s)" if d.gpus_per_node else f"{d.processes_per_node} CPU process(es)"


@group.command("list")
@json_option
@pass_ctx
@handle_errors
def list_(obj: CliContext, as_json: bool) -> None:
    """List the configured clusters."""
    page = obj.client().list_clusters()
    if as_json:
        print_json(page)
        return
    if not page.data:
        click.echo("No clusters yet: rft-tui clusters add NAME --ray http://HEAD:8265 --storage PATH")
        return
    print_table(["name", "kind", "where", "nodes", "per node", "storage"],
                [(c.name, c.kind, _where(c), c.defaults.nodes, _per_node(c.defaults), c.defaults.storage)
                 for c in page.data])


@group.command()
@click.argument("name")
@json_option
@pass_ctx
@handle_errors
def show(obj: CliContext, name: str, as_json: bool) -> None:
    """Show a cluster and its defaults."""
    c = obj.client().get_cluster(name)
    if as_json:
        print_json(c)
        return
    d = c.defaults
    print_kv([("name", c.name), ("kind", c.kind), ("where", _where(c)), ("nodes", d.nodes),
              ("per node", _per_node(d)), ("partition", d.partition or "-"), ("account", d.account or "-"),
              ("time limit", d.time_limit or "-"), ("storage", d.storage),
              ("storage options", json.dumps(d.storage_options) if d.storage_options else "-"),
              ("python", d.python or "-"),
              ("report url", d.report_url or "(the daemon's --tcp address)"), ("added", fmt_time(c.created_at))])


@group.command()
@click.argument("name")
@click.option("--timeout", type=click.FloatRange(min=1, max=120), default=60.0, show_default=True,
              help="Seconds to wait for the test job.")
@json_option
@pass_ctx
@handle_errors
def test(obj: CliContext, name: str, timeout: float, as_json: bool) -> None:
    """Submit a trivial job to the cluster and report the round trip."""
    result = obj.client().test_cluster(name, timeout_s=timeout)
    if as_json:
        print_json(result)
    else:
        verdict = "ok" if result.ok else "FAILED"
        click.echo(f"{result.name}: {verdict} -- {result.engine_id or 'no job'} {result.state} in "
                   f"{result.round_trip_s:.2f} s" + (f"; {result.detail}" if result.detail else "") +
                   (f" (storage round trip {result.storage_round_trip_s:.2f} s)"
                    if result.storage_round_trip_s is not None else ""))
        if result.output:
            click.echo(result.output)
    if not result.ok:
        raise SystemExit(1)


@group.command()
@click.argument("name")
@json_option
@pass_ctx
@handle_errors
def remove(obj: CliContext, name: str, as_json: bool) -> None:
    """Remove a cluster (refused while jobs on it are queued, running or paused)."""
    c = obj.client().remove_cluster(name)
    if as_json:
        print_json(c)
        return
    click.echo(f"Removed cluster {c.name}")
