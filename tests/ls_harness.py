"""A real local Label Studio server for tests, and a proxy that can play dead.

Loaded by ``conftest.py`` as the module ``ls_harness``, which re-exports the
fixtures ``label_studio`` (one :class:`dataops.labelstudio_server.LocalServer`
per test session, on a free loopback port, with its data folder and Local
Files document root under pytest's temporary folder) and ``ls_proxy`` (a fresh
:class:`DropProxy` in front of it for one test).

Label Studio lives in its own virtual environment (``make labelstudio`` /
``scripts/install_labelstudio.sh``). Without it the fixture skips, or fails
when ``CI`` is set. The first start of a data folder takes 35-85 s
(migrations), so the server is shared by the whole session.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from dataops.errors import ConfigError
from dataops.labelstudio_server import LocalServer, find_label_studio, start_local_server

START_TIMEOUT = 240.0
# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
               "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
               "expect", "content-length"}
_COPY_CHUNK = 64 * 1024


@dataclass
class DropProxy:
    """A tiny HTTP proxy that forwards everything, until told to go away.

    Every request (any method, headers, body; chunked request bodies are
    re-sent with a length) is forwarded to ``upstream`` on a new connection
    and the answer is streamed back with its Content-Length (read whole first
    when the server sent none). After :meth:`go_away` the proxy forwards
    ``after`` more requests, then closes every connection it gets (new ones at
    once, kept-alive ones at their next request) without answering, like a
    server that died, until :meth:`restore`.

    Attributes:
        upstream: ``(host, port)`` of the real server
        requests: ``(method, path)`` of every forwarded request
        dropped: ``(method, path)`` of every request closed unanswered
            (``("", "")`` for a connection closed before it was read)
    """

    upstream: tuple[str, int]
    requests: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._budget: int | None = None  # forwards left before going away; None: no limit
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                if not proxy._admit(self.command, self.path):
                    self.close_connection = True  # closed without a byte of answer
                    return
                body = self._read_body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body or self.command in ("POST", "PUT", "PATCH"):
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=300)
                try:
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        answer = conn.getresponse()
                    except OSError as error:
                        self.send_error(502, f"upstream unreachable: {error}")
                        return
                    length = answer.getheader("Content-Length")
                    data = None
                    if length is None and self.command != "HEAD":
                        data = answer.read()
                        length = str(len(data))
                    self.send_response(answer.status, answer.reason)
                    for key, value in answer.getheaders():
                        if key.lower() not in _HOP_BY_HOP and key.lower() not in ("date", "server"):
                            self.send_header(key, value)
                    if length is not None:
                        self.send_header("Content-Length", length)
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    if data is not None:
                        self.wfile.write(data)
                        return
                    while chunk := answer.read(_COPY_CHUNK):
                        self.wfile.write(chunk)
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request, client_address) -> bool:
                # A new connection while gone: closed before anything is read.
                return proxy._accepting()

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _accepting(self) -> bool:
        with self._lock:
            if self._budget == 0:
                self.dropped.append(("", ""))
                return False
            return True

    def _admit(self, method: str, path: str) -> bool:
        """Whether to forward this request (and count it either way)."""
        with self._lock:
            if self._budget == 0:
                self.dropped.append((method, path))
                return False
            if self._budget is not None:
                self._budget -= 1
            self.requests.append((method, path))
            return True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def gone(self) -> bool:
        """Whether the proxy is dropping connections now."""
        with self._lock:
            return self._budget == 0

    def go_away(self, after: int = 0) -> None:
        """Forwards ``after`` more requests, then drops every connection until :meth:`restore`."""
        if after < 0:
            raise ValueError("after must be >= 0")
        with self._lock:
            self._budget = after

    def go_away_now(self) -> None:
        """Drops every connection from now on, until :meth:`restore`."""
        self.go_away(0)

    def restore(self) -> None:
        """Forwards everything again."""
        with self._lock:
            self._budget = None

    def reset(self) -> None:
        """Forwards everything again and forgets the recorded requests."""
        with self._lock:
            self._budget = None
            self.requests.clear()
            self.dropped.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _missing_label_studio(problem: str) -> None:
    """Skips (fails on CI) the calling test: Label Studio is not installed."""
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


def require_label_studio() -> None:
    """Skips (fails when ``CI`` is set) without a ``label-studio`` executable."""
    try:
        find_label_studio()
    except ConfigError as error:
        _missing_label_studio(str(error))


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> Iterator[LocalServer]:
    """A local Label Studio server for the whole session; stopped afterwards.

    Its user's token is ``label_studio.api_key``; ``label_studio.env()`` gives
    ``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY``. Files under
    ``label_studio.document_root`` can be served by a Local Files storage.
    """
    require_label_studio()
    base = tmp_path_factory.mktemp("labelstudio")
    document_root = base / "files"
    document_root.mkdir()
    server = start_local_server(data_dir=base / "data", document_root=document_root,
                                timeout=START_TIMEOUT)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ls_proxy(label_studio: LocalServer) -> Iterator[DropProxy]:
    """A fresh :class:`DropProxy` in front of the session's Label Studio."""
    parts = urlsplit(label_studio.url)
    proxy = DropProxy((parts.hostname, parts.port))
    try:
        yield proxy
    finally:
        proxy.close()
