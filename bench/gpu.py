"""The GPU check: what ddpmlab does on a CUDA GPU, run in one go and printed as one table.

    python bench/gpu.py                 # sized for under 8 minutes on one H100-class GPU
    python bench/gpu.py --budget 300    # parts that would start after 300 s are skipped

The parts, in order (each a row: seconds, result, or why it was skipped):

1. ``cuda tests``: the suite's CUDA tests (``pytest tests -k cuda``), which skip without a GPU.
2. ``train digits`` and ``train mnist`` with ``--device cuda`` at ``--precision fp32`` and
   ``bf16``, each without and with ``--compile``: the command's wall time (training and the
   evaluation of 1,000 samples, figures off), FD / floor and the confident share (real
   images' beside it).
3. ``sample 10,000 digits``: ``ddpmlab sample`` of the first digits run on the GPU.
4. ``nccl``: a process group of one on NCCL, and ddpmlab's all-reduce of a trainer-sized flat
   buffer through it (``ddpmlab.distributed``; several processes need several GPUs).

Without a CUDA device every part is skipped with that reason, so the script runs anywhere.
Writes bench/results/gpu.json (the table the documentation shows, beside the machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "gpu.json"
CLI = [sys.executable, "-m", "ddpmlab.cli"]


class Check:
    """The rows so far and the time left."""

    def __init__(self, budget: float) -> None:
        self.start, self.budget = time.perf_counter(), budget
        self.rows: list[list[str]] = []

    def skip_reason(self) -> str | None:
        if not torch.cuda.is_available():
            return "skipped: no CUDA device (torch.cuda.is_available() is False)"
        if time.perf_counter() - self.start > self.budget:
            return f"skipped: past the {self.budget:.0f} s budget"
        return None

    def row(self, part: str, seconds: float | None, result: str) -> None:
        self.rows.append([part, "" if seconds is None else f"{seconds:.1f}", result])
        print(f"{part:<52} {'' if seconds is None else f'{seconds:7.1f} s':>9}  {result}",
              flush=True)


def command(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - start, proc


def failure(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return f"FAILED (exit {proc.returncode}): {lines[-1] if lines else 'no output'}"


def cuda_tests(check: Check) -> None:
    seconds, proc = command([sys.executable, "-m", "pytest", "tests", "-k", "cuda", "-n", "0",
                             "-p", "no:randomly", "-q", "-rs"])
    summary = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    check.row("cuda tests (pytest tests -k cuda)", seconds,
              summary if proc.returncode == 0 else failure(proc))


def train(check: Check, data: str, precision: str, compiled: bool, out: Path) -> bool:
    from ddpmlab.runs.evaluation import read_evaluation

    flags = ["--precision", precision] + (["--compile"] if compiled else [])
    part = f"train {data} --device cuda {' '.join(flags)}"
    reason = check.skip_reason()
    if reason:
        check.row(part, None, reason)
        return False
    seconds, proc = command([*CLI, "train", data, "--device", "cuda", *flags, "--out", str(out),
                             "--no-figures", "--quiet"])
    if proc.returncode:
        check.row(part, seconds, failure(proc))
        return False
    m = read_evaluation(out).metrics
    check.row(part, seconds, f"FD / floor {m['fd']['ratio']:.2f}, confident "
              f"{m['confident']['value']:.3f} (real {m['confident']['floor']:.3f})")
    return True


def sample(check: Check, run: Path, tmp: Path) -> None:
    part = "sample 10,000 digits --device cuda"
    reason = check.skip_reason() or (None if run.exists() else "skipped: no digits run")
    if reason:
        check.row(part, None, reason)
        return
    seconds, proc = command([*CLI, "sample", str(run), "--n", "10000", "--device", "cuda",
                             "--out", str(tmp / "digits.npy"), "--quiet"])
    check.row(part, seconds, "10,000 images" if proc.returncode == 0 else failure(proc))


def nccl(check: Check) -> None:
    part = "nccl: all-reduce in a process group of one"
    reason = check.skip_reason()
    if reason or not torch.distributed.is_nccl_available():
        check.row(part, None, reason or "skipped: this torch has no NCCL")
        return
    from ddpmlab import distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    torch.distributed.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}",
                                         rank=0, world_size=1)
    try:
        buffer = torch.arange(1_000_002, dtype=torch.float32, device="cuda")
        want = buffer.clone()
        distributed.all_reduce(buffer)
        torch.cuda.synchronize()
        ok = torch.equal(buffer, want)
    finally:
        torch.distributed.destroy_process_group()
    check.row(part, time.perf_counter() - start,
              "the sum of one rank is itself" if ok else "FAILED: the sum changed the buffer")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=420,
                   help="seconds after which the parts not yet started are skipped")
    args = p.parse_args()
    check = Check(args.budget)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(f"ddpmlab GPU check on {platform.node()}: {gpu}, torch {torch.__version__}\n")
    if check.skip_reason():
        check.row("cuda tests (pytest tests -k cuda)", None, check.skip_reason() or "")
    else:
        cuda_tests(check)
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        for data in ("digits", "mnist"):
            for precision in ("fp32", "bf16"):
                for compiled in (False, True):
                    name = f"{data}_{precision}{'_compile' if compiled else ''}"
                    train(check, data, precision, compiled, runs / name)
        sample(check, runs / "digits_fp32", runs)
    nccl(check)
    result = {"tables": [{
        "title": "The GPU check", "command": "python bench/gpu.py",
        "machine": f"{gpu}; {os.cpu_count()} CPU cores; torch {torch.__version__}",
        "date": datetime.date.today().isoformat(), "load": "",
        "columns": ["part", "seconds", "result"], "rows": check.rows,
        "note": "Train rows: the whole command (start-up, training, the evaluation of 1,000 "
                "samples against the held-out images; figures off), each data set's defaults. "
                f"Total {time.perf_counter() - check.start:.0f} s.",
    }]}
    OUT.write_text(json.dumps(result, indent=1))
    print(f"\ntotal {time.perf_counter() - check.start:.0f} s; written to "
          f"{OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
