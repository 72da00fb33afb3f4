"""The lab's responsiveness, measured in Chromium, beside the CLI.

    python bench/lab.py                      # the figures below, into bench/results/lab.json
    python bench/lab.py --screenshots docs/figures/lab   # also a screenshot of every view

1. "train" pressed on the default shape (swiss_roll, the default config) -> the first live
   samples drawn on the page, and -> the end-of-training metrics on the page, checked
   against the point bounds (1-NNA <= 0.55, W1 <= 1.3 x floor); beside the wall time of
   ``ddpmlab train swiss_roll --no-figures`` (the same training and evaluation, and the
   same figures: none) in a fresh process.
2. The forward view's t slider: from the input event to the redrawn plot, over ``--moves``
   moves, timed by the page itself (``performance.now()``; ``window.labDrawn``).
3. The server's memory (VmRSS) after each of ``--trainings`` trainings in a row, each
   opened afterwards as the page does (its reverse chain drawn). The trainings run in a
   worker process, which ends with each; its memory is not the server's.

Needs the system's Chromium (/usr/bin/chromium) and Playwright (``pip install -e
".[lab-test]"``). Timings depend on the machine's load: ``uptime``'s is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
LIMIT = 3_600_000  # ms: the longest wait for a training on a busy machine


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_lab(runs: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "ddpmlab", "lab", "--runs", str(runs),
                             "--port", "0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "ddpmlab lab: http://127.0.0.1:PORT/ (...)"
    return proc, line.split()[2]


def train_in_page(page: Page, steps: int) -> dict[str, Any]:
    """Press train; the page's own times (ms) to the first live samples and to the metrics.
    Pressed once the lab's worker has imported torch and ddpmlab (``trainer_ready``), which
    it does while the page is read, beforehand."""
    page.wait_for_function("() => fetch('/api/state').then(r => r.json())"
                           ".then(s => s.trainer_ready)", timeout=LIMIT, polling=200)
    page.click("#tabs button[data-tab='train']")
    page.fill("#steps", str(steps))
    before = page.evaluate("(window.labDrawn.preview || {count: 0}).count")
    start = page.evaluate("""() => { const t = performance.now();
        document.getElementById('train-start').click(); return t; }""")
    page.wait_for_function(f"() => (window.labDrawn.preview || {{count: 0}}).count > {before}",
                           timeout=LIMIT)
    first = page.evaluate("window.labDrawn.preview.at") - start
    page.wait_for_function("() => document.querySelector('#train-metrics table') !== null",
                           timeout=LIMIT, polling=50)
    done = page.evaluate("performance.now()") - start
    status = page.evaluate("fetch('/api/status?since=-1').then(r => r.json())")
    return {"first_ms": first, "metrics_ms": done, "status": status}


def passes(metrics: dict[str, Any]) -> bool:
    return bool(metrics["1nna"]["value"] <= 0.55
                and metrics["w1"]["value"] <= 1.3 * metrics["w1"]["floor"])


def slider(page: Page, moves: int) -> list[float]:
    """ms from the t slider's input event to its redrawn plot, one move after another."""
    page.click("#tabs button[data-tab='forward']")
    return list(page.evaluate("""async (moves) => {
        const s = document.getElementById('t'), out = [];
        for (let i = 0; i < moves; i++) {
            const count = (window.labDrawn.forward || {count: 0}).count;
            const t0 = performance.now();
            s.value = String((i * 37) % (+s.max + 1));
            s.dispatchEvent(new Event('input'));
            while (window.labDrawn.forward.count === count) {
                await new Promise(r => setTimeout(r, 1));
            }
            out.push(window.labDrawn.forward.at - t0);
        }
        return out; }""", moves))


def cli_seconds(runs: Path, steps: int) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "ddpmlab", "train", "swiss_roll", "--out",
                          str(runs / "cli"), "--steps", str(steps), "--no-figures",
                          "--quiet"], capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - start, out


def screenshots(page: Page, folder: Path) -> None:
    """A picture of every view, the training's run opened."""
    folder.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    page.click("#tabs button[data-tab='forward']")
    page.click("#source-schedule")
    page.wait_for_timeout(1500)
    shot("forward")
    page.click("#tabs button[data-tab='train']")
    shot("training")
    page.click("#tabs button[data-tab='reverse']")
    page.fill("#k", page.get_attribute("#k", "max") or "0")  # x_0, the paths whole
    page.wait_for_function("() => (window.labDrawn.score || {count: 0}).count > 0",
                           timeout=LIMIT)
    page.wait_for_timeout(1500)
    shot("reverse")
    page.click("#tabs button[data-tab='samplers']")
    for name in ("dpm_solver", "ode"):
        page.check(f"#sampler-choice input[value='{name}']")
    page.click("#run-samplers")
    page.wait_for_selector("#sampler-results .sampler >> nth=3", timeout=LIMIT)
    shot("samplers")
    page.click("#lang-fr")
    shot("samplers_fr")
    page.click("#lang-en")
    page.click("#tabs button[data-tab='data']")
    box = page.locator("#draw").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 208, box["y"] + 128)
    page.mouse.down()
    for k in range(60):  # a circle
        a = 2 * math.pi * k / 59
        page.mouse.move(box["x"] + 128 + 80 * math.cos(a), box["y"] + 128 + 80 * math.sin(a))
    page.mouse.up()
    page.click("#use-draw")
    page.wait_for_function("() => document.getElementById('data-label').textContent"
                           ".startsWith('drawing')")
    shot("data_drawing")
    page.select_option("#shape", "digits")
    page.click("#use-shape")
    page.wait_for_function("() => document.getElementById('data-label').textContent"
                           ".startsWith('digits')")
    page.click("#tabs button[data-tab='forward']")
    page.fill("#T", "200")
    page.select_option("#schedule", "cosine")
    page.fill("#t", "60")
    page.wait_for_timeout(1500)
    shot("digits_forward")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=4000, help="the default config's steps")
    p.add_argument("--moves", type=int, default=100)
    p.add_argument("--trainings", type=int, default=10)
    p.add_argument("--memory-steps", type=int, default=300)
    p.add_argument("--screenshots", type=Path, default=None)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lab.json")
    args = p.parse_args()
    loads = [load()]
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        runs = Path(tmp)
        cli_s, cli_out = cli_seconds(runs, args.steps)
        loads.append(load())
        proc, address = start_lab(runs / "lab")
        try:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(address)
            page.wait_for_selector("body[data-ready='1']")
            moves = slider(page, args.moves)
            first = train_in_page(page, args.steps)
            loads.append(load())
            page.click("#tabs button[data-tab='reverse']")
            page.wait_for_function("() => (window.labDrawn.reverse || {count: 0}).count > 0",
                                   timeout=LIMIT)
            if args.screenshots is not None:
                screenshots(page, args.screenshots)
                page.click("#tabs button[data-tab='data']")
                page.select_option("#shape", "swiss_roll")
                page.click("#use-shape")
            memory = [rss_mb(proc.pid)]
            for _ in range(args.trainings):
                train_in_page(page, args.memory_steps)
                page.click("#tabs button[data-tab='reverse']")
                page.wait_for_function("() => document.getElementById('run-label')"
                                       ".textContent.includes(' / ')", timeout=LIMIT)
                page.wait_for_timeout(2000)  # its reverse chain drawn
                memory.append(rss_mb(proc.pid))
            loads.append(load())
            browser.close()
        finally:
            proc.terminate()  # a training in progress saves its checkpoint first
            proc.wait(60)
    metrics = first["status"]["metrics"]
    quantiles = statistics.quantiles(moves, n=20)
    rows = [
        ["train -> first live samples (s)", round(first["first_ms"] / 1000, 2), "<= 3"],
        ["train -> metrics on the page (s)", round(first["metrics_ms"] / 1000, 1),
         f"<= {1.1 * cli_s:.1f} (CLI {cli_s:.1f} s + 10 %)"],
        ["  1-NNA / W1 / W1 floor", f"{metrics['1nna']['value']:.3f} / "
         f"{metrics['w1']['value']:.4f} / {metrics['w1']['floor']:.4f}",
         "passes" if passes(metrics) else "outside the bounds"],
        [f"t slider: input -> redrawn, median / p95 over {len(moves)} (ms)",
         f"{statistics.median(moves):.1f} / {quantiles[18]:.1f}", "median < 100"],
        [f"server memory after 0 / {args.trainings} trainings (MB)",
         f"{memory[0]:.0f} / {memory[-1]:.0f} (max {max(memory):.0f})", "no growth beyond one run"],
    ]
    table = {"title": "The lab: train, live samples, the t slider, memory",
             "command": "python bench/lab.py", "machine": f"{platform.machine()}, "
             f"{os.cpu_count()} cores", "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
             "load": " -> ".join(loads), "columns": ["measure", "value", "target"], "rows": rows,
             "note": f"{args.steps} training steps (swiss_roll, the default config); "
             f"memory: {args.trainings} trainings of {args.memory_steps} steps in a row, each "
             "opened; the CLI ran first, alone."}
    result = {"tables": [table], "cli_seconds": cli_s, "cli_output": cli_out,
              "first": first, "slider_ms": moves, "memory_mb": memory}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for row in rows:
        print(" | ".join(map(str, row)))
    print(f"load {table['load']}; written to {args.out}")


if __name__ == "__main__":
    main()
