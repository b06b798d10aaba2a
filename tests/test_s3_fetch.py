"""S3 fetching against a real local S3 endpoint (moto server), through a proxy
that counts requests and injects throttling, 5xx and broken bodies.

The endpoint itself (moto + proxy) is in ``s3_harness.py``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

import s3_harness  # noqa: E402  (loaded by conftest.py)

from dataops.errors import ConfigError, InputError  # noqa: E402
from dataops.s3_fetch import (  # noqa: E402
    S3Fetcher,
    default_cache_dir,
    fetch_s3_uri,
    parse_s3_uri,
    redact_url,
)

ACCESS_KEY = s3_harness.ACCESS_KEY
SECRET_KEY = s3_harness.SECRET_KEY
BUCKET = s3_harness.BUCKET
Fault = s3_harness.Fault
FaultProxy = s3_harness.FaultProxy
S3Endpoint = s3_harness.S3Endpoint
start_endpoint = s3_harness.start_endpoint


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
