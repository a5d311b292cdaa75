"""The model check: a model no worker could load fails at create / check / pre-flight within about a second,
with a "did you mean …", instead of a minute later in the worker (real daemon, real socket, a real HF cache dir)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemon_proc import DaemonProcess
from tests.support.jobs import job_request, make_files

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hf_cache(root: Path, repo_id: str) -> Path:
    """A Hugging Face hub cache holding `repo_id`'s config.json, laid out as huggingface_hub writes it."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    blob = repo / "blobs" / "c0ffee"
    blob.parent.mkdir()
    blob.write_text('{"model_type": "llama"}')
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to(blob)
    return root


@pytest.fixture(scope="module")
def hub_daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[DaemonProcess, str, str]]]:
    """Two daemons sharing one HF cache (holding acme/tiny-chat): one offline, one allowed to ask the hub."""
    import shutil
    import tempfile

    cache = fake_hf_cache(tmp_path_factory.mktemp("hf"), "acme/tiny-chat")
    out: dict[str, tuple[DaemonProcess, str, str]] = {}
    homes = []
    for name, extra in (("offline", {"HF_HUB_OFFLINE": "1"}), ("online", {})):
        home = Path(tempfile.mkdtemp(prefix=f"rft-mc{name[:2]}-"))
        homes.append(home)
        env = {"RFT_WORKER_MODULE": "tests.support.fake_worker", "HF_HUB_CACHE": str(cache), **extra}
        if name == "online":
            env["HF_HUB_OFFLINE"] = "0"
        d = DaemonProcess(home, env=env).start()
        with d.client() as c:
            train, valid = make_files(c, tmp_path_factory.mktemp("files"))
        out[name] = (d, train, valid)
    yield out
    for d, _, _ in out.values():
        d.stop()
    for home in homes:
        shutil.rmtree(home, ignore_errors=True)


def raw(d: DaemonProcess) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=d.socket), base_url="http://rft", timeout=30)


def refused(resp: httpx.Response) -> str:
    """The 400's message; the error names `model`."""
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["param"] == "model" and err["code"] == "model_not_found", err
    return str(err["message"])


@pytest.mark.parametrize("model, says", [
    ("builtin:tiny-arithh", "Did you mean 'builtin:tiny-arith'?"),
    ("tiny-arith", "Did you mean 'builtin:tiny-arith'?"),
    ("acme/tiny-chatt", "Did you mean 'acme/tiny-chat'?"),
    ("/no/such/model-dir", "does not exist"),
    ("~no-such-user-rft/model", "give an absolute path"),
])
@pytest.mark.slow
def test_create_and_check_refuse_a_bad_model_at_once(hub_daemons: dict, model: str, says: str) -> None:
    for name in ("offline", "online"):
        d, train, valid = hub_daemons[name]
        with raw(d) as h:
            for path, body in (("/v1/models/check", {"model": model}),
                               ("/v1/fine_tuning/jobs", {**job_request(train, valid), "model": model}),
                               ("/v1/fine_tuning/preflight", {**job_request(train, valid), "model": model})):
                started = time.monotonic()
                message = refused(h.post(path, json=body))
                elapsed = time.monotonic() - started
                assert says in message, (name, path, message)
                # offline: no request at all; online: at most the one short hub request (fails fast here)
                assert elapsed < (1.0 if name == "offline" else 2.5), (name, path, elapsed)
            assert h.get("/v1/fine_tuning/jobs").json()["data"] == []  # nothing was created


def test_good_models_pass_the_check(hub_daemons: dict, tmp_path: Path) -> None:
    local = tmp_path / "my-model"
    local.mkdir()
    (local / "config.json").write_text("{}")
    d, _, _ = hub_daemons["offline"]
    with d.client() as c:
        assert c.check_model("builtin:tiny-arith").source == "builtin"
        cached = c.check_model("acme/tiny-chat")
        assert (cached.source, cached.id, cached.revision, cached.cached) == ("hub", "acme/tiny-chat", "main", True)
        assert c.check_model(str(local)).id == str(local.resolve())
    with raw(d) as h:  # a local directory without config.json says so, and suggests its model-holding sibling
        message = refused(h.post("/v1/models/check", json={"model": str(tmp_path / "my-modle")}))
        assert f"Did you mean '{local}'" in message


def test_uncached_hub_model_offline_says_so(hub_daemons: dict) -> None:
    d, _, _ = hub_daemons["offline"]
    with raw(d) as h:
        message = refused(h.post("/v1/models/check", json={"model": "acme/other-model"}))
    assert "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in message
