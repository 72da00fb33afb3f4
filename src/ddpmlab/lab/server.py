"""The lab's web server: the standard library's threaded HTTP server, a static page and a
small JSON API over :class:`~ddpmlab.lab.state.Lab`.

What a browser may send is checked here: the Host header (a page of another site that
resolves its own name to 127.0.0.1 is refused), the size of a body, the names of the
routes and of the fields. A user's mistake comes back as ``{"error": one line}``; any other
failure as a short line naming its kind, its traceback going to the terminal only.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ddpmlab import SAMPLERS, UserError
from ddpmlab.lab.state import MAX_UPLOAD, SHAPES, SOURCE_SCHEDULE, Lab
from ddpmlab.lab.views import curves

STATIC = {"index.html": "text/html", "lab.js": "text/javascript", "plot.js": "text/javascript",
          "i18n.js": "text/javascript", "lab.css": "text/css"}
MAX_JSON = 64 * 1024  # bytes of a JSON request
DRAIN = 8 * MAX_UPLOAD  # bytes of a refused body read and dropped
SCHEDULES = ("cosine", "linear", "linear_unscaled", "sigmoid")


def _int(q: dict[str, Any], key: str) -> int:
    try:
        return int(q[key])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{key} must be a whole number") from None


def _schedule(q: dict[str, Any]) -> tuple[str, int]:
    name = q.get("schedule", "cosine")
    if name not in SCHEDULES:
        raise UserError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    return name, _int(q, "T")


def routes(lab: Lab) -> dict[tuple[str, str], Callable[[dict[str, Any], bytes], Any]]:
    """(method, path) -> handler(fields, raw body) returning what is sent as JSON."""

    def state(q: dict[str, Any], _: bytes) -> dict[str, Any]:
        view = lab.view.summary() if lab.view is not None else None
        return {"shapes": list(SHAPES), "schedules": list(SCHEDULES),
                "samplers": list(SAMPLERS), "source_schedule": list(SOURCE_SCHEDULE),
                "runs": lab.run_names(), "data": lab.data.view(), "run": view,
                "training": lab.status(), "max_upload": MAX_UPLOAD,
                "trainer_ready": lab.worker is not None and lab.worker.ready()}

    def forward(q: dict[str, Any], _: bytes) -> Any:
        name, T = _schedule(q)
        return lab.data.forward(name, T, _int(q, "t"))

    def train(q: dict[str, Any], _: bytes) -> Any:
        name, T = _schedule(q) if "resume" not in q else ("cosine", 2)
        return lab.train(_int(q, "steps") if "resume" not in q else 0, name, T, q.get("resume"))

    def samplers(q: dict[str, Any], _: bytes) -> Any:
        names = q.get("samplers")
        if not isinstance(names, list) or not 1 <= len(names) <= len(SAMPLERS) or \
                any(n not in SAMPLERS for n in names):
            raise UserError(f"choose samplers among: {', '.join(SAMPLERS)}")
        return lab.opened().samplers(names, _int(q, "steps"))

    return {
        ("GET", "/api/state"): state,
        ("POST", "/api/data"): lambda q, _: lab.choose(q.get("shape"), q.get("text")),
        ("POST", "/api/upload"): lambda q, body: lab.upload(q.get("kind", ""),
                                                            q.get("name", ""), body),
        ("GET", "/api/forward"): forward,
        ("GET", "/api/schedule"): lambda q, _: curves(*_schedule(q)),
        ("POST", "/api/train"): train,
        ("POST", "/api/stop"): lambda q, _: lab.stop(),
        ("GET", "/api/status"): lambda q, _: lab.status(_int(q, "since")),
        ("POST", "/api/open"): lambda q, _: lab.open(q.get("run", "")),
        ("GET", "/api/reverse"): lambda q, _: lab.opened().reverse(_int(q, "k")),
        ("GET", "/api/score"): lambda q, _: lab.opened().score(_int(q, "t")),
        ("POST", "/api/samplers"): samplers,
    }


def make_handler(lab: Lab, hosts: set[str]) -> type[BaseHTTPRequestHandler]:
    table = routes(lab)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a line per request would bury the address and the warnings

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            # the page loads nothing from elsewhere, and may not be framed by another site
            self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' "
                             "data: blob:; frame-ancestors 'none'")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, value: Any) -> None:
            self._send(code, json.dumps(value).encode(), "application/json")

        def _discard(self, size: int) -> None:
            """Read a refused body (so the browser gets the answer, not a reset) up to
            DRAIN bytes; past that the connection is closed."""
            self.close_connection = True
            left = size if size <= DRAIN else 0
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)

        def _serve(self, method: str) -> None:
            if self.headers.get("Host", "") not in hosts:
                return self._json(403, {"error": "this lab answers on its own address only"})
            url = urlsplit(self.path)
            if method == "GET" and not url.path.startswith("/api/"):
                name = "index.html" if url.path == "/" else url.path.removeprefix("/static/")
                if name not in STATIC:
                    return self._json(404, {"error": "not found"})
                body = resources.files("ddpmlab.lab").joinpath("static", name).read_bytes()
                return self._send(200, body, STATIC[name] + "; charset=utf-8")
            handler = table.get((method, url.path))
            if handler is None:
                return self._json(404, {"error": "not found"})
            try:
                size = int(self.headers.get("Content-Length") or 0)
                fields: dict[str, Any] = {k: v[-1] for k, v in parse_qs(url.query).items()}
                body = b""
                if size > (MAX_UPLOAD if url.path == "/api/upload" else MAX_JSON):
                    self._discard(size)
                    raise UserError(f"the request is too large (at most "
                                    f"{MAX_UPLOAD // 1024 // 1024} MB for an upload)")
                if size:
                    body = self.rfile.read(size)
                if method == "POST" and url.path != "/api/upload" and body:
                    try:
                        sent = json.loads(body)
                    except ValueError:
                        raise UserError("the request is not valid JSON") from None
                    if not isinstance(sent, dict):
                        raise UserError("the request must be a JSON object")
                    fields |= sent
                self._json(200, table[(method, url.path)](fields, body))
            except UserError as e:
                self._json(400, {"error": lab.say(str(e))})
            except Exception as e:  # the terminal gets the traceback; the page one line
                traceback.print_exc(file=sys.stderr)
                self._json(500, {"error": f"internal error ({type(e).__name__}); the terminal "
                                 "running `ddpmlab lab` shows the details"})

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler


def make_server(lab: Lab, host: str, port: int) -> ThreadingHTTPServer:
    """A server for ``lab`` on host:port (port 0: a free one)."""
    server = ThreadingHTTPServer((host, port), BaseHTTPRequestHandler)
    real = server.server_address[1]
    names = {host, "localhost", "127.0.0.1", "[::1]"} if host in ("127.0.0.1", "localhost",
                                                                  "::1") else None
    hosts = {f"{h}:{real}" for h in names} if names is not None else _any_host()
    server.RequestHandlerClass = make_handler(lab, hosts)
    server.daemon_threads = True
    return server


class _any_host(set[str]):
    """Any Host header: a lab opened to the network on purpose (``--host``) answers all."""

    def __contains__(self, item: object) -> bool:
        return True
