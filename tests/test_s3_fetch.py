"""S3 fetching against a real local S3 endpoint (moto server), through a proxy
that counts requests and injects throttling, 5xx and broken bodies.

Also provides :class:`S3Endpoint` (moto + proxy), reused by
``tests/test_cov_segm.py``.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from dataops.errors import ConfigError, InputError  # noqa: E402
from dataops.s3_fetch import (  # noqa: E402
    S3Fetcher,
    default_cache_dir,
    fetch_s3_uri,
    parse_s3_uri,
    redact_url,
)

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


@pytest.fixture(scope="module")
def endpoint() -> Iterator[S3Endpoint]:
    yield from start_endpoint()


@pytest.fixture(autouse=True)
def _credentials(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy(endpoint: S3Endpoint) -> Iterator[FaultProxy]:
    endpoint.proxy.reset()
    yield endpoint.proxy
    endpoint.proxy.reset()


def _fetcher(proxy: FaultProxy, cache: Path, **kwargs) -> tuple[S3Fetcher, list[float]]:
    sleeps: list[float] = []
    kwargs.setdefault("backoff_base", 0.01)
    fetcher = S3Fetcher(cache_dir=cache, endpoint_url=proxy.url, sleep=sleeps.append, **kwargs)
    return fetcher, sleeps


@pytest.mark.parametrize(
    "uri, expected",
    [
        # bucket and a nested key
        ("s3://bucket/a/b/c.jpg", ("bucket", "a/b/c.jpg")),
        # keys may hold spaces and '=' as S3 allows
        ("s3://b-1/x y=1.png", ("b-1", "x y=1.png")),
    ],
)
def test_parse_s3_uri(uri, expected):
    assert parse_s3_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "https://bucket/key.jpg",  # must raise: not s3://
        "s3://bucket",  # must raise: no key
        "s3:///key.jpg",  # must raise: no bucket
    ],
)
def test_parse_s3_uri_rejects(uri):
    with pytest.raises(InputError, match="s3://"):
        parse_s3_uri(uri)


@pytest.mark.parametrize(
    "url, expected",
    [
        # userinfo (credentials in a URL) is stripped
        ("http://user:pa55@minio.local:9000/", "http://minio.local:9000/"),
        # query strings (e.g. presigned tokens) are stripped
        ("https://s3.example.com/path?X-Amz-Credential=abc", "https://s3.example.com/path"),
        # a plain URL is kept
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        # nothing stays nothing
        (None, None),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_default_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DATAOPS_S3_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"


def test_download_then_cache_hit_makes_no_request(endpoint, proxy, tmp_path):
    uri = endpoint.put("img/one.jpg", b"\xff\xd8 image bytes")
    fetcher, _ = _fetcher(proxy, tmp_path / "cache")
    assert fetcher.fetch(uri) == b"\xff\xd8 image bytes"
    assert [m for m, _ in proxy.requests] == ["GET"]
    assert fetcher.cache_path(uri).is_file() and fetcher.cache_path(uri).suffix == ".jpg"
    # a second fetcher on the same cache (a second load) sends nothing
    proxy.requests.clear()
    again, _ = _fetcher(proxy, tmp_path / "cache")
    assert again.fetch(uri) == b"\xff\xd8 image bytes"
    assert proxy.requests == []
    assert (again.stats.downloads, again.stats.cache_hits) == (0, 1)


@pytest.mark.parametrize(
    "faults, retries",
    [
        # S3 throttling: 503 SlowDown twice, then success
        ([Fault(503, "SlowDown"), Fault(503, "SlowDown")], 2),
        # HTTP 429 then a 500 InternalError
        ([Fault(429, "TooManyRequests"), Fault(500, "InternalError")], 2),
        # a body that breaks off halfway, then success
        ([Fault(0)], 1),
        # no fault: no retry
        ([], 0),
    ],
)
def test_retries_with_backoff(endpoint, proxy, tmp_path, faults, retries):
    data = bytes(range(256)) * 64
    uri = endpoint.put("retry/obj.bin", data)
    proxy.faults.extend(faults)
    fetcher, sleeps = _fetcher(proxy, tmp_path / "cache")
    assert fetcher.fetch(uri) == data
    assert fetcher.stats.retries == retries
    assert len(proxy.requests) == retries + 1
    assert len(sleeps) == retries
    # full jitter under an exponentially growing ceiling
    assert all(0 <= s <= 0.01 * 2**n for n, s in enumerate(sleeps))
    # nothing half-written is left in the cache
    assert not list((tmp_path / "cache").rglob(".part-*"))


def test_gives_up_after_max_attempts(endpoint, proxy, tmp_path):
    uri = endpoint.put("retry/never.bin", b"x")
    proxy.faults.extend([Fault(503, "SlowDown")] * 10)
    fetcher, sleeps = _fetcher(proxy, tmp_path / "cache", max_attempts=3)
    with pytest.raises(InputError, match=r"s3://dataops-test/retry/never.bin: .*503 SlowDown.* 3 attempts"):
        fetcher.fetch(uri)
    assert len(proxy.requests) == 3 and len(sleeps) == 2
    assert not fetcher.cache_path(uri).exists()


@pytest.mark.parametrize(
    "key, rule, message",
    [
        # must raise at once: access denied (no retry)
        ("secret/forbidden.jpg", Fault(403, "AccessDenied"), r"access denied .*HTTP 403"),
        # must raise at once: the object does not exist (moto's own 404)
        ("missing/none.jpg", None, r"no such object .*HTTP 404 NoSuchKey"),
    ],
)
def test_403_and_404_fail_clearly_without_retry(endpoint, proxy, tmp_path, key, rule, message):
    if rule is not None:
        endpoint.put(key, b"x")
        proxy.rules["forbidden"] = rule
    fetcher, sleeps = _fetcher(proxy, tmp_path / "cache")
    with pytest.raises(InputError, match=message) as caught:
        fetcher.fetch(f"s3://{BUCKET}/{key}")
    assert caught.value.path == f"s3://{BUCKET}/{key}"
    assert len(proxy.requests) == 1 and sleeps == []


def test_missing_bucket_is_named(proxy, tmp_path):
    fetcher, _ = _fetcher(proxy, tmp_path / "cache")
    with pytest.raises(InputError, match="no such bucket"):
        fetcher.fetch("s3://no-such-bucket-here/a.jpg")


def test_parallel_downloads_are_bounded(endpoint, proxy, tmp_path):
    uris = [endpoint.put(f"many/{n:03d}.png", bytes([n]) * 1000) for n in range(24)]
    active = {"now": 0, "peak": 0}
    lock = threading.Lock()
    original = proxy._next_fault

    def counting(method, path):  # how many requests are in flight at once
        with lock:
            active["now"] += 1
            active["peak"] = max(active["peak"], active["now"])
        try:
            import time

            time.sleep(0.02)
            return original(method, path)
        finally:
            with lock:
                active["now"] -= 1

    proxy._next_fault = counting
    try:
        fetcher, _ = _fetcher(proxy, tmp_path / "cache", max_workers=3)
        paths = fetcher.fetch_many(uris + uris[:5])  # repeats are fetched once
    finally:
        proxy._next_fault = original
    assert list(paths) == uris
    assert [p.read_bytes() for p in paths.values()] == [bytes([n]) * 1000 for n in range(24)]
    assert len(proxy.requests) == 24
    assert 1 < active["peak"] <= 3


def test_fetch_many_collects_failures_when_asked(endpoint, proxy, tmp_path):
    good = endpoint.put("mix/good.jpg", b"ok")
    bad = f"s3://{BUCKET}/mix/absent.jpg"
    fetcher, _ = _fetcher(proxy, tmp_path / "cache")
    failures: dict = {}
    paths = fetcher.fetch_many([good, bad, "not-a-uri"], failures=failures)
    assert list(paths) == [good]
    assert set(failures) == {bad, "not-a-uri"}
    # without it, the first failure raises
    with pytest.raises(InputError, match="absent.jpg"):
        _fetcher(proxy, tmp_path / "cache2")[0].fetch_many([good, bad])


def test_fetch_s3_uri_uses_cache_and_endpoint(endpoint, proxy, tmp_path):
    uri = endpoint.put("one/shot.jpg", b"abc")
    assert fetch_s3_uri(uri, cache_dir=tmp_path, endpoint_url=proxy.url) == b"abc"
    assert fetch_s3_uri(uri, cache_dir=tmp_path, endpoint_url=proxy.url) == b"abc"
    assert len(proxy.requests) == 1


def test_endpoint_from_botocore_environment(endpoint, proxy, tmp_path, monkeypatch):
    # the standard AWS_ENDPOINT_URL variable is honoured without a parameter
    uri = endpoint.put("env/endpoint.jpg", b"env")
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    fetcher = S3Fetcher(cache_dir=tmp_path)
    assert fetcher.fetch(uri) == b"env"
    assert len(proxy.requests) == 1
    assert fetcher.describe()["endpoint_url"] == proxy.url


def test_profile_from_shared_config(endpoint, proxy, tmp_path, monkeypatch):
    # credentials from a named profile of the shared credentials file
    uri = endpoint.put("profile/p.jpg", b"prof")
    creds = tmp_path / "credentials"
    creds.write_text(f"[research]\naws_access_key_id = {ACCESS_KEY}\n"
                     f"aws_secret_access_key = {SECRET_KEY}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config-absent"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    fetcher, _ = _fetcher(proxy, tmp_path / "cache", profile="research")
    assert fetcher.fetch(uri) == b"prof"
    # must raise: an unknown profile is a configuration error
    with pytest.raises(ConfigError, match="profile 'nope'"):
        _fetcher(proxy, tmp_path / "cache2", profile="nope")[0].fetch(uri)


def test_no_credentials_is_a_clear_error(proxy, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    fetcher, _ = _fetcher(proxy, tmp_path / "cache")
    with pytest.raises(InputError, match="no usable AWS credentials"):
        fetcher.fetch(f"s3://{BUCKET}/whatever.jpg")


def test_secrets_never_in_errors_or_logs(endpoint, proxy, tmp_path, caplog):
    uri = endpoint.put("log/x.jpg", b"x")
    proxy.faults.extend([Fault(503, "SlowDown")] * 5)
    leaky_endpoint = proxy.url.replace("http://", f"http://{ACCESS_KEY}:{SECRET_KEY}@")
    fetcher, _ = _fetcher(proxy, tmp_path / "cache", max_attempts=2)
    # what is shown of an endpoint URL with userinfo never holds it
    shown = S3Fetcher(cache_dir=tmp_path, endpoint_url=leaky_endpoint)
    assert SECRET_KEY not in repr(shown) and SECRET_KEY not in str(shown.describe())
    assert ACCESS_KEY not in str(shown.describe())
    with caplog.at_level(logging.DEBUG), pytest.raises(InputError) as caught:
        fetcher.fetch(uri)
    assert SECRET_KEY not in str(caught.value)
    assert SECRET_KEY not in caplog.text
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("dataops")]
    assert ours and all(ACCESS_KEY not in m for m in ours)
