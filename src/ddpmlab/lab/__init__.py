"""``ddpmlab lab``: the course in the browser, on the library's own API (optional extra).

A local web app: choose or draw the data, move the forward process's t, train live, walk
the reverse chain, compare samplers beside their floors, in French or English. What it
trains is a normal run directory in its runs folder. :func:`serve` starts it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ddpmlab.lab.server import make_server
from ddpmlab.lab.state import Lab

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(runs: Path, run: Path | None = None, host: str = "127.0.0.1", port: int = 8765,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the lab until interrupted; ``on_ready(address)`` once it answers.

    ``runs``: the folder it trains into and lists runs from (made if absent); ``run``: a run
    to open at once. On exit a training in progress is stopped with its checkpoint saved
    (``ddpmlab train --out RUN --resume`` continues it)."""
    runs.mkdir(parents=True, exist_ok=True)
    lab = Lab(runs, run)
    server = make_server(lab, host, port)
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{server.server_address[1]}/"
    try:
        if on_ready is not None:
            on_ready(address)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        lab.close()


__all__ = ["LOOPBACK", "serve"]
