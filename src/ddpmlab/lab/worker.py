"""The lab's training worker: one process that trains one run directory, then exits.

Training runs outside the server process, so the page stays responsive and the server's
memory does not grow with each training. The worker is started ahead of time (it imports
torch and ddpmlab before it is needed, so pressing "train" costs no start-up), reads one job
as a JSON line on stdin, calls :func:`ddpmlab.train_run` and reports one JSON line on
stdout. It is a normal ``ddpmlab train``: the same checks, files, checkpoints and
evaluation. SIGTERM stops it like Ctrl-C stops the command (the checkpoint of the training
so far is saved, and ``ddpmlab train --out RUN --resume`` continues it); so does the
server's end, seen as the end of stdin.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from ddpmlab import UserError, default_config, train_run
from ddpmlab.runs.layout import resume_config


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # as the CLI does: the training saves a checkpoint, then stops


def _watch_parent() -> None:
    """The server gone (stdin closed): stop training as SIGTERM would."""
    sys.stdin.read()
    os.kill(os.getpid(), signal.SIGTERM)


def _say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    _say(event="ready")  # imported: a job starts at once
    try:
        line = sys.stdin.readline()
    except KeyboardInterrupt:  # stopped while waiting for a job
        return 0
    if not line:
        return 0  # the server closed before giving a job
    job = json.loads(line)
    threading.Thread(target=_watch_parent, daemon=True).start()
    try:
        out, resume = Path(job["out"]), job.get("resume", False)
        config = resume_config(out)[0] if resume else default_config(job["source"],
                                                                     job["overrides"])
        train_run(config, out, resume=resume, progress=False,
                  figures=False, on_start=lambda text: _say(event="started", text=text))
    except UserError as e:
        _say(event="error", message=str(e))
        return 2
    except KeyboardInterrupt:
        _say(event="stopped")
        return 130
    except OSError as e:
        _say(event="error", message=e.strerror or "the system refused a file operation")
        return 2
    _say(event="done")
    return 0


class Worker:
    """A warm worker process: started on creation, given one job by :meth:`start`."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ddpmlab.lab.worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.events: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue  # a library's own print, not an event

    def start(self, job: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def ready(self) -> bool:
        """Whether the process has imported what training needs."""
        return any(e["event"] == "ready" for e in self.events)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM: the worker saves its checkpoint at the end of the step in progress."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)

    def close(self, timeout: float = 30.0) -> None:
        """Stop and wait (a training saves its checkpoint first); killed past ``timeout``."""
        self.stop()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(1.0)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


if __name__ == "__main__":
    sys.exit(main())
