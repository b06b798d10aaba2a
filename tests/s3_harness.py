"""A real local S3 endpoint for tests: moto's server behind a proxy that
counts requests and injects throttling, 5xx and broken bodies.

Loaded by ``conftest.py`` as the module ``s3_harness`` (used by
``test_s3_fetch.py`` and ``test_cov_segm.py``). boto3 and moto are imported
when an endpoint starts, so collecting other tests does not need them.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: dummy credentials; the secret must never show up anywhere
ACCESS_KEY = "AKIATESTDATAOPS00001"
SECRET_KEY = "dataops-secret-never-shown-0123456789"
BUCKET = "dataops-test"

_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>injected by the test proxy</Message>"
    "<RequestId>test</RequestId></Error>"
)


@dataclass
class Fault:
    """An answer the proxy gives instead of forwarding.

    Attributes:
        status: HTTP status (0 for a truncated body: the object's headers with
            half of its bytes, then the connection closes)
        code: S3 error code in the XML body
    """

    status: int
    code: str = ""


@dataclass
class FaultProxy:
    """A tiny HTTP proxy in front of moto.

    Attributes:
        upstream: ``(host, port)`` of moto
        requests: ``(method, path)`` of every request received
        faults: answers for the next requests, used up in order
        rules: path substring → fault answered every time (e.g. 403)
    """

    upstream: tuple[str, int]
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    rules: dict[str, Fault] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._next_fault(self.command, self.path)
                if fault is not None and fault.status:
                    payload = _ERROR_XML.format(code=fault.code).encode()
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                conn.close()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection",
                                           "date", "server"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                if fault is not None:  # truncated body
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _next_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.requests.append((method, path))
            for fragment, fault in self.rules.items():
                if fragment in path:
                    return fault
            return self.faults.pop(0) if self.faults else None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        """Forget counted requests and pending faults."""
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self.rules.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class S3Endpoint:
    """moto (direct URL, for setting up objects) and the proxy (for the code under test)."""

    moto_url: str
    proxy: FaultProxy
    client: object

    def put(self, key: str, data: bytes) -> str:
        """Stores an object; returns its URI."""
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data)
        return f"s3://{BUCKET}/{key}"


def start_endpoint() -> Iterator[S3Endpoint]:
    """Starts moto + proxy, with dummy credentials in the environment."""
    import boto3
    from moto import server as moto_server

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    client.create_bucket(Bucket=BUCKET)
    proxy = FaultProxy((host, port))
    try:
        yield S3Endpoint(f"http://{host}:{port}", proxy, client)
    finally:
        proxy.close()
        server.stop()
