"""Shared fixtures: one thread (the suite's runtimes are measured that way), tiny runs, and the
diffusers reference numbers. Shared constants and functions are in helpers.py."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA_TOML, TINY, contents

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """A trained tiny run directory, shared and read-only: a test that writes into it fails
    at the end of the test run (use ``tiny_copy`` to change a run)."""
    from ddpmlab.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    config = out.parent / "tiny.toml"
    config.write_text(DATA_TOML)
    assert main(["train", "moons", "--out", str(out), "--config", str(config), *TINY]) == 0
    before = contents(out)
    yield out
    assert contents(out) == before, "a test changed the shared tiny_run; use tiny_copy"


@pytest.fixture
def tiny_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of tiny_run of the test's own, free to change."""
    return Path(shutil.copytree(tiny_run, tmp_path / "tiny"))


REF_PATH = Path(__file__).parent / "data" / "diffusers_ref_subset.npz"


@pytest.fixture(scope="session")
def ref() -> dict[str, np.ndarray]:
    """The project's copy of shared/reference/diffusers_ref.npz (tests/data/make_subset.py)."""
    with np.load(REF_PATH) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture
def lab_server(tmp_path_factory: pytest.TempPathFactory):
    """A lab (``ddpmlab.lab``) served in a thread on a free port of 127.0.0.1, with a runs
    folder of its own: (address, runs folder, the Lab). One per test, so that no test sees
    the data, schedule or run another one chose, whatever their order."""
    from ddpmlab.lab.server import make_server
    from ddpmlab.lab.state import Lab

    runs = tmp_path_factory.mktemp("lab")
    lab = Lab(runs)
    server = make_server(lab, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", runs, lab
    server.shutdown()
    thread.join()
    server.server_close()
    lab.close()
