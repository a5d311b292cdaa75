"""Paged rows through the offset index: any page, line numbers kept, stale/missing index rebuilt, damage reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.client import ApiRequestError
from daemon.datasets.index import MAGIC
from tests.datasets.conftest import Cli, row, store_state, write


def _import(cli: Cli, path: Path, *flags: str) -> dict:
    rc, obj = cli.json("files", "add", str(path), *flags)
    assert rc == 0, obj
    return obj


def _stored(cli: Cli, sha: str) -> tuple[Path, Path]:
    data = cli.daemon.paths.files / f"{sha}.jsonl"
    return data, data.with_suffix(".idx")


@pytest.mark.slow
def test_pages_keep_line_numbers_and_any_page_is_served(cli: Cli, tmp_path: Path) -> None:
    lines = [row(f"{i}+1=", str(i + 1)) for i in range(1000)]
    lines.insert(500, "")  # a blank line: not a row, but later rows keep their real line numbers
    obj = _import(cli, write(tmp_path / "big.jsonl", "\n".join(lines) + "\n"))
    assert obj["rows"] == 1000

    rc, page = cli.json("files", "rows", obj["id"], "--offset", "0", "--limit", "3")
    assert rc == 0 and page["total_rows"] == 1000
    assert [(r["line"], r["data"]["answer"]) for r in page["data"]] == [(1, "1"), (2, "2"), (3, "3")]
    rc, page = cli.json("files", "rows", obj["id"], "--offset", "998", "--limit", "50")
    assert [(r["line"], r["data"]["answer"]) for r in page["data"]] == [(1000, "999"), (1001, "1000")]
    rc, page = cli.json("files", "rows", obj["id"], "--offset", "499", "--limit", "2")
    assert [r["line"] for r in page["data"]] == [500, 502]
    rc, page = cli.json("files", "rows", obj["id"], "--offset", "5000")
    assert rc == 0 and page["data"] == [] and page["total_rows"] == 1000

    out = cli("files", "rows", obj["id"], "--offset", "998")
    assert out.returncode == 0
    assert out.stdout.splitlines()[0].split(None, 1) == ["1000", '{"messages": [{"role": "user", "content": '
                                                                 '"998+1="}], "answer": "999"}']
    assert "rows 999-1000 of 1000" in out.stderr


def test_stale_or_missing_index_is_rebuilt(cli: Cli, tmp_path: Path) -> None:
    obj = _import(cli, write(tmp_path / "s.jsonl", "".join(row(f"{i}+2=", str(i + 2)) + "\n" for i in range(50))))
    data, idx = _stored(cli, obj["sha256"])
    expected = [r["data"] for r in cli.daemon.client().file_rows(obj["id"], 40, 10).model_dump()["data"]]

    idx.write_bytes(b"garbage")  # damaged
    with cli.daemon.client() as c:
        assert [r.data for r in c.file_rows(obj["id"], 40, 10).data] == expected
        assert idx.read_bytes()[:8] == MAGIC
        idx.unlink()  # missing
        assert [r.data for r in c.file_rows(obj["id"], 40, 10).data] == expected
        assert idx.exists()
        st = data.stat()
        os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # data touched: stamp no longer matches
        before = idx.stat().st_mtime_ns
        assert [r.data for r in c.file_rows(obj["id"], 40, 10).data] == expected
        assert idx.stat().st_mtime_ns != before


def test_truncated_stored_copy_is_a_clear_error(cli: Cli, tmp_path: Path) -> None:
    obj = _import(cli, write(tmp_path / "t.jsonl", "".join(row(f"{i}+3=", str(i + 3)) + "\n" for i in range(20))))
    data, _ = _stored(cli, obj["sha256"])
    os.chmod(data, 0o644)
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    out = cli("files", "rows", obj["id"], "--offset", "15")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("Error [FILE_ID]: The stored copy of " + obj["id"])
    assert "corrupt or truncated" in out.stderr and "Import the original file again" in out.stderr
    data.unlink()
    with cli.daemon.client() as c, pytest.raises(ApiRequestError) as err:
        c.file_rows(obj["id"])
    assert err.value.status_code == 409 and err.value.error.code == "file_missing"


@pytest.mark.slow
def test_forced_file_shows_bad_rows_with_their_error(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path / "forced.jsonl",
                 row() + "\n" + '{"messages": [{"role": "user", "cont' + "\n" + row("2+2=", "4"))
    before = store_state(cli.daemon)
    assert cli("files", "add", str(path)).returncode == 1 and store_state(cli.daemon) == before
    obj = _import(cli, path, "--force")
    rc, page = cli.json("files", "rows", obj["id"])
    assert [r["line"] for r in page["data"]] == [1, 2, 3]
    bad = page["data"][1]
    assert bad["data"] is None and bad["error"].startswith("not valid JSON") and bad["raw"].startswith('{"messages"')
    assert page["data"][2]["data"]["answer"] == "4"
    out = cli("files", "rows", obj["id"])
    assert "       2  ERROR: not valid JSON" in out.stdout


@pytest.mark.slow
def test_bad_paging_arguments(cli: Cli, tmp_path: Path) -> None:
    obj = _import(cli, write(tmp_path / "p.jsonl", row() + "\n"))
    for args, param in ((("--limit", "0"), "--limit"), (("--offset", "-1"), "--offset"),
                        (("--limit", "5000"), "--limit")):  # the option the user typed
        out = cli("files", "rows", obj["id"], *args)
        assert out.returncode == 1 and out.stderr.startswith(f"Error [{param}]:"), out.stderr


def test_same_content_same_id_by_upload_and_by_path(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path / "same.jsonl", row("7+7=", "14") + "\n")
    with cli.daemon.client() as c:
        up = c.upload_file(str(path))
        by_path = c.import_file(str(path))
        sent: list[int] = []
        again = c.upload_file(str(path), on_progress=sent.append)
    assert up.id == by_path.id == again.id and sum(sent) == path.stat().st_size
    assert up.rows == 1 and up.source_path == str(path.resolve())
    leftovers = [p.name for p in cli.daemon.paths.files.iterdir() if p.name.startswith(".")]
    assert leftovers == []
