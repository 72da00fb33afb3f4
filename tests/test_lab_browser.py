"""The lab in a real browser: Playwright drives the system's Chromium (/usr/bin/chromium,
Debian's ``chromium`` package) over a lab served on 127.0.0.1 (the ``lab_server`` fixture).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

import ddpmlab

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TRAIN_S = 300_000  # ms: a few hundred steps and their evaluation on a busy 2-core machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, lab_server: tuple[str, Path, Any]) -> Iterator[Page]:
    """The lab's page, loaded; ``page.errors`` collects console errors and uncaught
    exceptions, ``page.elsewhere`` every request that left the lab's own address."""
    address = lab_server[0]
    p = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    elsewhere: list[str] = []
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("request", lambda r: None if r.url.startswith((address, "data:", "blob:"))
         else elsewhere.append(r.url))
    p.goto(address)
    p.wait_for_selector("body[data-ready='1']")
    p.errors, p.elsewhere = errors, elsewhere  # type: ignore[attr-defined]
    yield p
    p.close()


def drawn(page: Page, view: str) -> int:
    return int(page.evaluate(f"(window.labDrawn['{view}'] || {{count: 0}}).count"))


def pixels(page: Page, canvas: str) -> str:
    return str(page.evaluate(f"document.querySelector('{canvas}').toDataURL()"))


def inked(page: Page, canvas: str) -> int:
    """Pixels drawn on a canvas (a plot drawn while its view was hidden has none)."""
    return int(page.evaluate(f"""() => {{ const c = document.querySelector('{canvas}');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }}"""))


def tab(page: Page, name: str) -> None:
    page.click(f"#tabs button[data-tab='{name}']")


def test_the_page_loads_offline_without_console_errors(page: Page) -> None:
    # the forward plot follows the data's, asynchronously, once the page is ready
    page.wait_for_function("() => (window.labDrawn.forward || {count: 0}).count >= 1")
    assert page.errors == [] and page.elsewhere == []  # type: ignore[attr-defined]
    assert drawn(page, "data") == 1
    page.click("#lang-fr")
    assert page.inner_text("#tabs button[data-tab='train']") == "Entraînement"
    page.click("#lang-en")
    assert page.inner_text("#tabs button[data-tab='train']") == "Training"


def test_a_drawing_becomes_the_data(page: Page) -> None:
    """A horizontal stroke drawn with the mouse: points spread along x, not y."""
    box = page.locator("#draw").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 30, y)
    page.mouse.down()
    for k in range(1, 21):
        page.mouse.move(box["x"] + 30 + k * (box["width"] - 60) / 20, y)
    page.mouse.up()
    page.click("#use-draw")
    page.wait_for_function("() => document.getElementById('data-label').textContent"
                           ".startsWith('drawing.png')")
    spread = page.evaluate("""fetch('/api/state').then(r => r.json()).then(s => {
        const p = s.data.points, xs = p.filter((_, i) => i % 2 === 0),
              ys = p.filter((_, i) => i % 2 === 1);
        return [Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)]; })""")
    assert spread[0] > 4 * spread[1], spread
    assert page.errors == []  # type: ignore[attr-defined]


def test_moving_t_redraws_the_forward_plot(page: Page) -> None:
    tab(page, "forward")
    before, count = pixels(page, "#forward-plot"), drawn(page, "forward")
    page.fill("#t", "150")
    # t-out is written in the same step as the plot at t = 150 (lab.js, forwardAt): a draw
    # of the page's first load may still end after the fill and must not count
    page.wait_for_function(f"() => (window.labDrawn.forward || {{count: 0}}).count > {count}"
                           " && "
                           "document.getElementById('t-out').textContent.startsWith('151')")
    assert pixels(page, "#forward-plot") != before
    page.click("#source-schedule")  # sigmoid, T = 150: x_T keeps 0.83 of x_0
    page.wait_for_function("() => document.getElementById('kept').textContent.includes('0.828')")


def test_a_broken_csv_shows_one_line(page: Page) -> None:
    page.set_input_files("#points-file", files=[{"name": "broken.csv", "mimeType": "text/csv",
                                                 "buffer": b"x,y\n1,2\n3\n"}])
    message = page.locator("#message")
    message.wait_for(state="visible")
    text = message.inner_text()
    assert "broken.csv" in text and "2 columns" in text and "\n" not in text.strip()
    assert "Traceback" not in text and "uploads" not in text


def test_train_then_reverse_and_two_samplers(page: Page,
                                             lab_server: tuple[str, Path, Any]) -> None:
    """A few hundred steps on moons: live samples, the metrics, then the run's views; the
    run is a normal run directory."""
    page.select_option("#shape", "moons")
    page.click("#use-shape")
    page.wait_for_function("() => document.getElementById('data-label').textContent"
                           ".startsWith('moons')")
    tab(page, "forward")
    page.fill("#T", "50")  # the training takes the forward view's schedule and T
    page.dispatch_event("#T", "change")
    tab(page, "train")
    page.fill("#steps", "300")
    page.click("#train-start")
    page.wait_for_function("() => (window.labDrawn.preview || {count: 0}).count > 0",
                           timeout=TRAIN_S)
    page.wait_for_selector("#train-metrics table", timeout=TRAIN_S)
    assert "W1" in page.inner_text("#train-metrics")
    page.wait_for_function("() => document.getElementById('runs').value !== ''")
    name = page.input_value("#runs")
    run = ddpmlab.open_run(lab_server[1] / name)  # what `ddpmlab sample` opens
    assert run.step == 300 and run.schedule.T == 50 and run.sample(5).shape == (5, 2)
    tab(page, "reverse")
    page.wait_for_function("() => document.getElementById('run-label').textContent"
                           f".startsWith('{name}')")
    page.wait_for_function("() => (window.labDrawn.reverse || {count: 0}).count > 0")
    before, count = pixels(page, "#reverse-plot"), drawn(page, "reverse")
    page.fill("#k", "20")
    page.wait_for_function(f"() => window.labDrawn.reverse.count > {count}")
    assert pixels(page, "#reverse-plot") != before
    page.wait_for_function("() => (window.labDrawn.score || {count: 0}).count > 0")
    assert inked(page, "#score-plot") > 1000
    tab(page, "samplers")
    page.fill("#sampler-steps", "10")
    page.click("#run-samplers")  # ddpm and ddim are ticked
    page.wait_for_selector("#sampler-results .sampler >> nth=1", timeout=TRAIN_S)
    cards = page.locator("#sampler-results .sampler")
    assert cards.count() == 2
    assert "ddpm" in cards.nth(0).inner_text() and "ddim" in cards.nth(1).inner_text()
    assert "1-NNA" in cards.nth(1).inner_text()
    assert page.errors == []  # type: ignore[attr-defined]


def test_an_existing_run_opens(page: Page, lab_server: tuple[str, Path, Any]) -> None:
    runs = lab_server[1]
    config = ddpmlab.default_config("gaussians8", {
        "data": {"n_train": 500, "heldout": 200}, "diffusion": {"timesteps": 20},
        "train": {"steps": 30, "batch_size": 64}})
    ddpmlab.train_run(config, runs / "made-by-the-cli", progress=False, evaluate=False,
                      figures=False)
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    tab(page, "train")
    page.select_option("#runs", "made-by-the-cli")
    page.click("#open-run")
    tab(page, "reverse")
    page.wait_for_function("() => document.getElementById('run-label').textContent"
                           ".startsWith('made-by-the-cli')")
    for view in ("score", "reverse"):
        page.wait_for_function(f"() => (window.labDrawn.{view} || {{count: 0}}).count > 0")
    assert inked(page, "#score-plot") > 1000 and inked(page, "#reverse-plot") > 1000
    assert page.inner_text("#score-note") == ""  # gaussians8 has its exact score
