"""The lab's state: the data on the page, the one training at a time, the opened run.

Every file the lab touches on a browser's request lies in its runs folder: run directories
(named by the lab, chosen by the browser only among those listed) and uploads/ (saved under
a name the lab makes from their content). No path comes from the browser.
"""

from __future__ import annotations

import csv
import hashlib
import re
import threading
import time
from pathlib import Path
from typing import Any

from ddpmlab import UserError
from ddpmlab.data import TOY2D
from ddpmlab.lab.views import Data, RunView, preview
from ddpmlab.lab.worker import Worker
from ddpmlab.runs.evaluation import read_evaluation
from ddpmlab.runs.layout import CKPT, CONFIG, LOSS, METRICS, resume_config

UPLOADS = "uploads"
MAX_UPLOAD = 2 * 1024 * 1024  # bytes: a CSV of some 100,000 points, a picture
UPLOAD_SUFFIXES = {"points": (".csv", ".txt", ".npy"), "picture": (".png", ".jpg", ".jpeg")}
SHAPES = (*TOY2D, "digits")  # mnist is left out: its first use downloads it
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
WORD = re.compile(r"[\w -]{1,24}")
PREVIEW_EVERY = 0.5  # seconds between two live previews of a training
SOURCE_SCHEDULE = ("sigmoid", 150)  # the source text's schedule (DESIGN, "Known slips")


def user_name(name: str) -> str:
    """An uploaded file's own name as the page may show it: base name, printable, short."""
    base = re.split(r"[\\/]", name)[-1]
    return "".join(c for c in base if c.isprintable())[:60] or "the file"


class Lab:
    def __init__(self, runs: Path, run: Path | None = None) -> None:
        self.runs = runs
        self.lock = threading.RLock()  # the data and the opened run
        self.train_lock = threading.RLock()  # the training
        self.data = Data.prepare("swiss_roll", "swiss_roll")
        self.view: RunView | None = None
        # warm: started now, given the next training's job; the next one is started when
        # that training ends (its imports would take a core from the training's start)
        self.worker: Worker | None = Worker()
        self.training: dict[str, Any] | None = None
        if run is not None:
            self.view = RunView(run)

    # ---- messages and names -------------------------------------------------------------
    def say(self, text: str) -> str:
        """A message as the browser sees it: the runs folder's own path left out."""
        for root in (str(self.runs.resolve()), str(self.runs)):
            text = text.replace(root + "/", "").replace(root, "the runs folder")
        return text

    def run_names(self) -> list[str]:
        if not self.runs.is_dir():
            return []
        return sorted(p.name for p in self.runs.iterdir()
                      if p.is_dir() and (p / CONFIG).is_file() and NAME.fullmatch(p.name))

    def run_path(self, name: str) -> Path:
        """A run the browser names: one of those listed, nothing else."""
        if not isinstance(name, str) or name not in self.run_names():
            raise UserError(f"no run called {name!r} in the runs folder; choose one listed")
        return self.runs / name

    def new_run_path(self, label: str) -> Path:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_")[:40] or "run"
        k = 1
        while (self.runs / f"{stem}-{k}").exists():
            k += 1
        return self.runs / f"{stem}-{k}"

    # ---- data ---------------------------------------------------------------------------
    def choose(self, shape: str | None = None, text: str | None = None) -> dict[str, Any]:
        if shape is not None:
            if shape not in SHAPES:
                raise UserError(f"unknown shape {shape!r}; choose one of: {', '.join(SHAPES)}")
            data = Data.prepare(shape, shape)
        elif text is not None:
            if not WORD.fullmatch(text.strip()):
                raise UserError("type a word of 1 to 24 letters, digits or spaces")
            data = Data.prepare(f"text:{text.strip()}", f"text:{text.strip()}")
        else:
            raise UserError("choose a shape or type a word")
        with self.lock:
            self.data = data
        return data.view()

    def upload(self, what: str, name: str, body: bytes) -> dict[str, Any]:
        """Save an upload in uploads/ under a name made from its content, and read it with
        the CLI's loader; its one-line refusal names the user's file, not ours."""
        if what not in UPLOAD_SUFFIXES:
            raise UserError(f"unknown upload kind {what!r}")
        shown = user_name(name)
        suffix = Path(shown).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES[what]:
            raise UserError(f"{shown}: use a {', '.join(UPLOAD_SUFFIXES[what])} file")
        if len(body) > MAX_UPLOAD:
            raise UserError(f"{shown} is larger than {MAX_UPLOAD // 1024 // 1024} MB; "
                            "upload a smaller file")
        folder = self.runs / UPLOADS
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha256(body).hexdigest()[:16]}{suffix}"
        if not path.exists():
            path.write_bytes(body)
        try:
            data = Data.prepare(str(path), shown)
        except UserError as e:
            raise UserError(str(e).replace(str(path), shown)) from None
        with self.lock:
            self.data = data
        return data.view()

    # ---- training -----------------------------------------------------------------------
    def train(self, steps: int, schedule: str, T: int,
              resume: str | None = None) -> dict[str, Any]:
        with self.train_lock:
            if self.training is not None and self._state(self.training) == "running":
                raise UserError("a training is already running in this lab; stop it first")
            if resume is not None:  # the run's own configuration, as `train --resume` reads it
                out = self.run_path(resume)
                job: dict[str, Any] = {"out": str(out), "resume": True}
                total = resume_config(out)[0].train.steps
            else:
                with self.lock:
                    source, label = self.data.source, self.data.label
                if not 1 <= steps <= 100_000:
                    raise UserError(f"steps must be in 1..100000, got {steps}")
                out, total = self.new_run_path(label), steps
                # a checkpoint every 1/80 of the steps (at most 50): the live samples' pace
                job = {"source": source, "out": str(out), "overrides": {
                    "train": {"steps": steps, "checkpoint_every": max(1, min(50, steps // 80))},
                    "diffusion": {"schedule": schedule, "timesteps": T}}}
            worker = self.worker if self.worker is not None and self.worker.running() \
                else Worker()  # cold: the job waits in its stdin while it imports
            worker.start(job)
            self.worker = None
            self.training = {"state": "running", "run": out.name, "steps": total,
                             "started": time.time(), "message": "", "worker": worker}
            return self.status()

    def stop(self) -> dict[str, Any]:
        with self.train_lock:
            if self.training is not None:
                self.training["worker"].stop()
            return self.status()

    def _state(self, t: dict[str, Any]) -> str:
        """A training's state, from what its worker said: running, done, stopped, error."""
        worker: Worker = t["worker"]
        if not worker.running():
            worker.reader.join(2.0)  # its last line read, before it is judged
        for event in worker.events:
            if event["event"] in ("done", "stopped", "error"):
                t["state"] = event["event"]
                t["message"] = self.say(event.get("message", ""))
        if t["state"] == "running" and not worker.running():
            t["state"], t["message"] = "error", "the training process ended unexpectedly"
        if t["state"] != "running" and self.worker is None:
            self.worker = Worker()  # warm for the next training
        state: str = t["state"]
        return state

    def status(self, since: int = -1) -> dict[str, Any]:
        """The training's state, its loss curve, and the EMA model's samples when its
        checkpoint is newer than step ``since``."""
        with self.train_lock:
            t = self.training
            if t is None:
                return {"state": "idle"}
            self._state(t)
            path = self.runs / t["run"]
            out: dict[str, Any] = {k: v for k, v in t.items()
                                   if k not in ("worker", "mtime", "sampled")}
            out["elapsed"] = round(time.time() - t["started"], 2)
            out["loss"] = read_loss(path / LOSS)
            out.pop("preview", None)
            mtime = (path / CKPT).stat().st_mtime_ns if (path / CKPT).is_file() else None
            # sampled once per checkpoint, whoever asks, at most every PREVIEW_EVERY seconds
            # (the training has the other core)
            if mtime is not None and mtime != t.get("mtime") and \
                    time.time() - t.get("sampled", 0.0) >= PREVIEW_EVERY:
                try:
                    t["preview"], t["mtime"], t["sampled"] = preview(path), mtime, time.time()
                except (UserError, OSError):  # the checkpoint is being replaced: next poll
                    pass
            if "preview" in t:
                out["step"] = t["preview"]["step"]
                if t["preview"]["step"] > since:
                    out["preview"] = t["preview"]
            if t["state"] == "done" and (path / METRICS).is_file():
                out["metrics"] = read_evaluation(path).metrics
            return out

    # ---- an opened run -----------------------------------------------------------------
    def open(self, name: str) -> dict[str, Any]:
        view = RunView(self.run_path(name))
        with self.lock:
            self.view = view
        return view.summary()

    def opened(self) -> RunView:
        with self.lock:
            if self.view is None:
                raise UserError("open a run first (train one, or choose one in the list)")
            return self.view

    def close(self) -> None:
        """Stop the training (its checkpoint is saved: ``--resume`` continues it)."""
        with self.train_lock:
            if self.training is not None:
                self.training["worker"].close()
            if self.worker is not None:
                self.worker.close()


def read_loss(path: Path) -> list[list[float]]:
    """loss.csv's rows (step, loss), [] before the first checkpoint writes it."""
    try:
        with path.open() as f:
            return [[int(r["step"]), float(r["loss"])] for r in csv.DictReader(f)]
    except (OSError, ValueError, KeyError):
        return []
