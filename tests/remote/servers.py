"""Real servers on 127.0.0.1 for the object-store tests and the remote benchmark.

- `RangeHTTPServer`: a folder over HTTP/1.1 with `Range: bytes=a-b` support (206), HEAD, and
  optional per-request latency, 503s, cut connections and a "Range ignored" mode.
- `S3Server`: moto's S3 server (its WSGI app, served by werkzeug as `moto_server` does) behind
  a small middleware with the same latency and faults.

Both answer one request per connection (HTTP/1.0; see `_Handler.protocol_version`).

Both count what they send: `stats.body_bytes` is the sum of response bodies (what a pruned
sample saves), `stats.gets` the GET requests. Faults apply only to ranged GETs (`Range:`
header), drawn from a seeded RNG; a "cut" sends the status, the headers and half of the body,
then shuts the socket down, as a dropped connection does.
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Faults:
    """What the server does to ranged GETs: each draw is independent (seeded)."""

    latency: float = 0.0  # seconds before every response
    error_rate: float = 0.0  # 503
    cut_rate: float = 0.0  # half the body, then the connection drops
    ignore_range: bool = False  # answer a ranged GET with 200 and the whole file
    seed: int = 0


@dataclass
class Stats:
    requests: int = 0
    gets: int = 0
    ranged_gets: int = 0
    body_bytes: int = 0
    ranged_bytes: int = 0  # the part of body_bytes sent for ranged GETs
    errors_injected: int = 0
    cuts_injected: int = 0
    # every request that changes the store, "METHOD /bucket/key?query", in the order it completed
    writes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def reset(self) -> None:
        with self.lock:
            self.requests = self.gets = self.ranged_gets = self.body_bytes = 0
            self.ranged_bytes = 0
            self.errors_injected = self.cuts_injected = 0
            self.writes = []

    def wrote(self, entry: str) -> None:
        with self.lock:
            self.writes.append(entry)


class _Injector:
    def __init__(self) -> None:
        self.faults = Faults()
        self.stats = Stats()
        self._rng = random.Random(0)
        self._lock = threading.Lock()

    def set(self, faults: Faults) -> None:
        with self._lock:
            self.faults, self._rng = faults, random.Random(faults.seed)

    def draw(self, ranged: bool) -> str | None:
        """None, "error" or "cut" for this request."""
        if self.faults.latency:
            time.sleep(self.faults.latency)
        if not ranged:
            return None
        with self._lock:
            x = self._rng.random()
        if x < self.faults.error_rate:
            return "error"
        if x < self.faults.error_rate + self.faults.cut_rate:
            return "cut"
        return None


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    m = _RANGE.match(header or "")
    if m is None:
        return None
    start = int(m.group(1))
    end = min(int(m.group(2)) + 1 if m.group(2) else size, size)
    return start, end


class RangeHTTPServer(_Injector):
    """Serves `root` on http://127.0.0.1:<free port>/ until `stop()`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        self.root = os.fspath(root)
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="seta_stream-test-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 256  # many concurrent ranged GETs connect at once (default 5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients drop connections on purpose here (cuts, closed iterators): no tracebacks."""


class _Handler(BaseHTTPRequestHandler):
    owner: RangeHTTPServer
    # HTTP/1.0: one connection per request. With keep-alive, a server in the test process and
    # DataLoader workers forked from it share pooled connections' sockets, and a request on a
    # pooled connection can then wait for the client's 5-minute timeout.
    protocol_version = "HTTP/1.0"
    disable_nagle_algorithm = True  # else a body written after its headers waits ~40 ms

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _file(self) -> str | None:
        rel = self.path.split("?", 1)[0].lstrip("/")
        path = os.path.normpath(os.path.join(self.owner.root, rel))
        if not path.startswith(self.owner.root) or not os.path.isfile(path):
            self.send_error(404)
            return None
        return path

    def do_HEAD(self) -> None:
        self.owner.stats.add(requests=1)
        path = self._file()
        if path is None:
            return
        self.send_response(200)
        self.send_header("Content-Length", str(os.path.getsize(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self) -> None:
        owner = self.owner
        owner.stats.add(requests=1, gets=1)
        path = self._file()
        if path is None:
            return
        size = os.path.getsize(path)
        rng = _parse_range(self.headers.get("Range"), size)
        owner.stats.add(ranged_gets=rng is not None)
        fault = owner.draw(rng is not None)
        if fault == "error":
            owner.stats.add(errors_injected=1)
            body = b"injected failure"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            owner.stats.add(body_bytes=len(body))  # before the write: the client may go on
            self.wfile.write(body)  # before this thread counts, and a test reset the counts
            return
        if rng is None or owner.faults.ignore_range:
            start, end, status = 0, size, 200
        else:
            (start, end), status = rng, 206
        with open(path, "rb") as f:
            body = os.pread(f.fileno(), end - start, start)
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        ranged = int(rng is not None)
        if fault == "cut":
            half = len(body) // 2
            owner.stats.add(cuts_injected=1, body_bytes=half, ranged_bytes=half * ranged)
            self.wfile.write(body[:half])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        owner.stats.add(body_bytes=len(body), ranged_bytes=len(body) * ranged)  # (see above)
        self.wfile.write(body)


class S3Server(_Injector):
    """moto's S3 server on http://127.0.0.1:<free port> until `stop()`."""

    def __init__(self) -> None:
        super().__init__()
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = DomainDispatcherApplication(create_backend_app)
        handler = type("Handler", (MotoRequestHandler,), {"protocol_version": "HTTP/1.0"})
        self._server = make_server(
            "127.0.0.1", 0, self._middleware(app), threaded=True, request_handler=handler
        )
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # called with "/bucket/key?query" after each write completes (a test's observer)
        self.on_write: Callable[[str], None] | None = None
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="seta_stream-test-s3", daemon=True
        )
        self._thread.start()

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"key": "testing", "secret": "testing", "endpoint_url": self.endpoint}

    def object(self, bucket: str, key: str) -> bytes | None:
        """An object's bytes as the store holds them now (moto's backend, no request)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        obj = s3_backends[DEFAULT_ACCOUNT_ID]["global"].get_object(bucket, key)
        return None if obj is None else bytes(obj.value)

    def _middleware(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterator[bytes]]:
        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
            get = environ["REQUEST_METHOD"] == "GET"
            ranged = get and "HTTP_RANGE" in environ
            self.stats.add(requests=1, gets=get, ranged_gets=ranged)
            fault = self.draw(ranged)
            if fault == "error":
                self.stats.add(errors_injected=1)
                body = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
                start_response("503 Service Unavailable", [("Content-Length", str(len(body)))])
                self.stats.add(body_bytes=len(body))
                yield body
                return
            result = app(environ, start_response)
            try:
                data = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):  # done: visible to readers now
                query = environ.get("QUERY_STRING", "")
                path = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
                self.stats.wrote(f"{environ['REQUEST_METHOD']} {path}")
                if self.on_write is not None:  # before the client hears back: the store as is
                    self.on_write(path)
            if fault == "cut":
                half = len(data) // 2
                self.stats.add(cuts_injected=1, body_bytes=half, ranged_bytes=half)
                yield data[:half]
                sock = environ.get("werkzeug.socket")
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
                return
            if get:
                self.stats.add(body_bytes=len(data), ranged_bytes=len(data) * ranged)
            yield data

        return wrapped

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
