"""The comparison that chose the lab's framework: one slider over t redrawing 1,000 points
of q(x_t | x_0), served by Gradio or Panel, loaded in Chromium.

    python -m venv /tmp/fw && /tmp/fw/bin/pip install gradio     # or panel
    python bench/lab_frameworks.py gradio /tmp/fw/bin/python

Prints the server's start-up, the page's load, the hosts other than 127.0.0.1 the page
asked for, and the median time from a key press on the slider to the response carrying the
new points (Gradio: its queue's response; Panel: the websocket's next frame) over 30 moves.
Install size: ``du -sh`` of the venv. The lab's own page is measured by bench/lab.py.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

FRAME = """
import sys, numpy as np
g = np.random.default_rng(0); x0 = g.normal(size=(1000, 2)); eps = g.normal(size=(1000, 2))
ab = np.cos(np.linspace(0, 1, 200) * np.pi / 2) ** 2
def frame(t):  # Ho et al. 2020, Eq. 4
    return np.sqrt(ab[int(t)]) * x0 + np.sqrt(1 - ab[int(t)]) * eps
"""
APPS = {
    "gradio": FRAME + """
import pandas as pd, gradio as gr
def table(t):
    x = frame(t); return pd.DataFrame({"x": x[:, 0], "y": x[:, 1]})
with gr.Blocks(analytics_enabled=False) as demo:
    s = gr.Slider(0, 199, step=1, value=0, label="t")
    p = gr.ScatterPlot(table(0), x="x", y="y")
    s.change(table, s, p)
demo.launch(server_port=int(sys.argv[1]))
""",
    "panel": FRAME + """
import panel as pn
from bokeh.plotting import figure
from bokeh.models import ColumnDataSource
def cols(t):
    x = frame(t); return {"x": x[:, 0], "y": x[:, 1]}
src = ColumnDataSource(cols(0)); f = figure(width=400, height=400)
f.scatter("x", "y", source=src)
s = pn.widgets.IntSlider(name="t", start=0, end=199, value=0)
s.param.watch(lambda e: setattr(src, "data", cols(e.new)), "value")
pn.serve(pn.Column(s, pn.pane.Bokeh(f)), port=int(sys.argv[1]), show=False)
""",
}
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("framework", choices=APPS)
    p.add_argument("python", help="the Python of a venv where the framework is installed")
    p.add_argument("--port", type=int, default=8761)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "app.py"
        app.write_text(APPS[args.framework])
        proc = subprocess.Popen([args.python, str(app), str(args.port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{args.port}/"
        start = time.time()
        while True:
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        print(f"server answers after {time.time() - start:.1f} s")
        elsewhere: set[str] = set()
        got: list[float] = []
        times = []
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = b.new_page()
            page.on("request", lambda r: None if r.url.startswith(
                ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))
                else elsewhere.add(r.url.split("/")[2]))
            if args.framework == "panel":
                page.on("websocket", lambda ws: ws.on(
                    "framereceived", lambda f: got.append(time.perf_counter())))
                handle = ".noUi-handle"
            else:
                page.on("response", lambda r: got.append(time.perf_counter())
                        if "queue/data" in r.url else None)
                handle = "input[type=range]"
            start = time.time()
            page.goto(url, wait_until="networkidle")
            print(f"page loads in {time.time() - start:.2f} s")
            slider = page.locator(handle).first
            for _ in range(30):
                n, t = len(got), time.perf_counter()
                slider.focus()
                page.keyboard.press("ArrowRight")
                deadline = time.time() + 5
                while len(got) == n and time.time() < deadline:
                    page.wait_for_timeout(2)
                if len(got) > n:
                    times.append((got[n] - t) * 1000)
                page.wait_for_timeout(100)
            b.close()
        proc.terminate()
    print(f"hosts other than 127.0.0.1: {sorted(elsewhere) or 'none'}")
    if times:
        print(f"slider key -> new data: median {statistics.median(times):.0f} ms over "
              f"{len(times)} moves")


if __name__ == "__main__":
    main()
