"""The lab's server without a browser: what a browser may send, what it gets back, and the
training worker's stop and resume (tests/test_lab_browser.py drives the page itself)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import one_line_error

import ddpmlab
from ddpmlab.cli import main
from ddpmlab.lab.state import MAX_UPLOAD
from ddpmlab.runs.layout import CKPT, resume_config


def call(address: str, method: str, path: str, body: bytes | dict | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(address.rstrip("/") + path, data=data, method=method,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_another_address_needs_expose(capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(capsys, main(["lab", "--host", "0.0.0.0"]), "--expose")


def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(capsys, main(["lab", str(tmp_path)]), "not a ddpmlab run")


def test_a_page_of_another_site_is_refused(lab_server: tuple[str, Path, Any]) -> None:
    address, _, _ = lab_server
    port = address.rstrip("/").rsplit(":", 1)[1]
    code, body = call(address, "GET", "/api/state", headers={"Host": f"evil.example:{port}"})
    assert code == 403 and "own address" in body["error"]
    assert call(address, "GET", "/api/state")[0] == 200


@pytest.mark.parametrize("path", ["/static/../state.py", "/static/views.py", "/%2e%2e/x",
                                  "/static/%2e%2e/__init__.py", "/api/nothing"])
def test_only_the_page_and_the_api_are_served(lab_server: tuple[str, Path, Any],
                                              path: str) -> None:
    assert call(lab_server[0], "GET", path)[0] == 404


def test_an_upload_too_large_is_refused(lab_server: tuple[str, Path, Any]) -> None:
    address, runs, _ = lab_server
    before = set((runs / "uploads").glob("*"))  # the server is shared by this file's tests
    code, body = call(address, "POST", "/api/upload?kind=points&name=big.csv",
                      b"1,2\n" * (MAX_UPLOAD // 4 + 1))
    assert code == 400 and "too large" in body["error"]
    assert set((runs / "uploads").glob("*")) == before  # nothing was written


def test_a_broken_csv_gets_the_cli_line_naming_the_users_file(
        lab_server: tuple[str, Path, Any]) -> None:
    address, runs, _ = lab_server
    code, body = call(address, "POST", "/api/upload?kind=points&name=C:\\me\\bad.csv",
                      b"x,y\n1,2\n3,oops\n")
    assert code == 400
    line = body["error"]
    assert "bad.csv" in line and "line 3" in line and "\n" not in line
    assert str(runs) not in line and "uploads" not in line and "C:" not in line


def test_runs_are_chosen_among_those_listed(lab_server: tuple[str, Path, Any]) -> None:
    address, runs, _ = lab_server
    for name in ("../x", str(runs), "/etc", "uploads"):
        code, body = call(address, "POST", "/api/open", {"run": name})
        assert code == 400 and "choose one listed" in body["error"], name


def test_a_failure_reaches_the_page_as_one_line(lab_server: tuple[str, Path, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    address, _, lab = lab_server

    def broken(*args: Any) -> None:
        raise RuntimeError("inside /secret/path")

    monkeypatch.setattr(lab.data, "forward", broken)
    code, body = call(address, "GET", "/api/forward?t=1&T=10&schedule=cosine")
    assert code == 500 and "RuntimeError" in body["error"]
    assert "secret" not in body["error"] and "Traceback" not in body["error"]


def test_a_stopped_training_resumes_from_its_checkpoint(
        lab_server: tuple[str, Path, Any]) -> None:
    """One training at a time; Stop keeps a checkpoint; `train --resume` continues it."""
    address, runs, lab = lab_server
    lab.choose(shape="moons")
    code, started = call(address, "POST", "/api/train",
                         {"steps": 300, "schedule": "cosine", "T": 50})
    assert code == 200 and started["state"] == "running"
    code, body = call(address, "POST", "/api/train", {"steps": 10, "schedule": "cosine",
                                                      "T": 50})
    assert code == 400 and "already running" in body["error"]
    out = runs / started["run"]
    deadline = time.monotonic() + 120
    while not (out / CKPT).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    call(address, "POST", "/api/stop")
    while (status := call(address, "GET", "/api/status?since=-1")[1])["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status["state"] == "stopped"
    config, step = resume_config(out)
    assert step is not None and 0 < step < 300 and config.diffusion.timesteps == 50
    run = ddpmlab.train_run(config, out, resume=True, progress=False, evaluate=False,
                            figures=False)
    assert run.step == 300
