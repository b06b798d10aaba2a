"""Fetching ``s3://`` objects into an on-disk cache (the network edge).

FiftyOne (open source) reads local files only, so objects named by S3 URIs
(the main images of cov_segm rows) are downloaded once into a cache folder
and used from there; a second load of the same URIs downloads nothing.

- Credentials come from boto3's standard chain (environment, shared
  config/credentials file and ``profile``, container/instance role). They
  are never logged, put in error messages or stored: only the endpoint URL
  (without any ``user:password@`` part) is ever shown.
- ``endpoint_url`` points at an S3-compatible store (MinIO, Ceph, moto...);
  botocore's own ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` also work.
- Throttling (429, ``SlowDown``...), 5xx answers and dropped connections are
  retried with exponential backoff and full jitter; 403 and 404 fail at once
  with an :class:`~dataops.errors.InputError` naming the URI.
- :meth:`S3Fetcher.fetch_many` downloads with a bounded number of threads
  (one shared, thread-safe boto3 client).

Retries are done here rather than by botocore (whose retries are switched
off): the attempts, the backoff and the count of retries stay visible and
testable, and a body that breaks off mid-download is retried too.

Example::

    from dataops.s3_fetch import S3Fetcher, fetch_s3_uri
    data = fetch_s3_uri("s3://bucket/images/0001.jpg")
    fetcher = S3Fetcher(endpoint_url="http://127.0.0.1:9000", max_workers=8)
    paths = fetcher.fetch_many(["s3://bucket/a.jpg", "s3://bucket/b.jpg"])
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dataops.errors import ConfigError, InputError
from dataops.progress import ProgressFn, report

log = logging.getLogger(__name__)

#: environment variable naming the cache folder
CACHE_ENV = "DATAOPS_S3_CACHE"

#: S3 error codes worth another attempt (besides HTTP 429 and 5xx)
RETRYABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "SlowDown",
    "RequestLimitExceeded", "TooManyRequestsException", "TooManyRequests",
    "RequestThrottled", "RequestTimeout", "InternalError", "ServiceUnavailable",
})

_CHUNK = 1 << 20
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Splits ``s3://bucket/key`` into bucket and key.

    Raises:
        InputError: not an ``s3://`` URI with a bucket and a key
    """
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InputError(str(uri), "not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise InputError(uri, "an S3 URI needs a bucket and a key: s3://bucket/key")
    return bucket, key


def redact_url(url: str | None) -> str | None:
    """The URL without ``user:password@``, query or fragment (safe to show/store)."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def default_cache_dir() -> Path:
    """``$DATAOPS_S3_CACHE``, else ``<dataops media root>/s3-cache``."""
    value = os.environ.get(CACHE_ENV)
    if value:
        return Path(value).expanduser()
    from dataops.media import media_root

    return media_root() / "s3-cache"


@dataclass
class FetchStats:
    """What a fetcher did.

    Attributes:
        downloads: objects downloaded
        cache_hits: URIs served from the cache without a request
        retries: attempts repeated after throttling, 5xx or a dropped connection
        bytes_downloaded: bytes written into the cache
    """

    downloads: int = 0
    cache_hits: int = 0
    retries: int = 0
    bytes_downloaded: int = 0

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


class _Retry(Exception):
    """An attempt failed in a way worth trying again."""

    def __init__(self, reason: str, final: InputError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.final = final


class S3Fetcher:
    """Downloads S3 objects into a cache folder, with retries and bounded threads.

    Args:
        cache_dir: cache folder (default :func:`default_cache_dir`)
        endpoint_url: an S3-compatible endpoint (default: AWS, or botocore's
            ``AWS_ENDPOINT_URL``)
        profile: a profile of the shared AWS config (default: the standard chain)
        region: AWS region (default: the standard chain)
        max_workers: parallel downloads in :meth:`fetch_many`
        max_attempts: attempts per object (1 = no retries)
        backoff_base: first backoff ceiling in seconds (doubles per attempt)
        backoff_max: largest backoff in seconds
        timeout: connect and read timeout in seconds
        sleep: how to wait between attempts (tests pass a recorder)
    """

    def __init__(
        self,
        *,
        cache_dir: str | Path | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        region: str | None = None,
        max_workers: int = 8,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_workers < 1 or max_attempts < 1:
            raise ConfigError("max_workers and max_attempts must be at least 1")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self._endpoint_url = endpoint_url or None
        self.profile = profile or None
        self.region = region or None
        self.max_workers = int(max_workers)
        self.max_attempts = int(max_attempts)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.timeout = float(timeout)
        self.stats = FetchStats()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._client = None
        self._random = random.Random()

    # -- what may be shown -------------------------------------------------

    @property
    def endpoint(self) -> str | None:
        """The endpoint URL as it may be shown or stored (no userinfo)."""
        return redact_url(self._endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                          or os.environ.get("AWS_ENDPOINT_URL"))

    def describe(self) -> dict:
        """Settings safe to store (dataset info, manifests): never credentials."""
        return {"endpoint_url": self.endpoint, "region": self.region}

    def __repr__(self) -> str:
        return f"S3Fetcher(endpoint={self.endpoint!r}, cache_dir={str(self.cache_dir)!r})"

    # -- the cache ----------------------------------------------------------

    def cache_path(self, uri: str) -> Path:
        """Where the object of ``uri`` is (or will be) cached.

        The name is a SHA-256 of the endpoint and the URI (the same URI on two
        stores is two objects), plus the key's extension.
        """
        parse_s3_uri(uri)
        digest = hashlib.sha256(f"{self.endpoint or 'aws'}\n{uri}".encode()).hexdigest()
        suffix = Path(uri).suffix.lower()
        if not _SUFFIX.match(suffix):
            suffix = ""
        return self.cache_dir / digest[:2] / f"{digest}{suffix}"

    # -- fetching -------------------------------------------------------------

    def fetch_to_cache(self, uri: str) -> Path:
        """The cached file of ``uri``, downloading it first when absent.

        Raises:
            InputError: not an S3 URI, 403, 404, no credentials, or still
                failing after ``max_attempts`` (names the URI, never secrets)
        """
        path = self.cache_path(uri)
        if path.is_file():
            with self._lock:
                self.stats.cache_hits += 1
            return path
        self._download(uri, path)
        return path

    def fetch(self, uri: str) -> bytes:
        """The bytes of the object of ``uri`` (cached on disk)."""
        return self.fetch_to_cache(uri).read_bytes()

    def fetch_many(
        self,
        uris: Iterable[str],
        *,
        failures: dict[str, InputError] | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Path]:
        """Fetches several URIs, at most ``max_workers`` at a time.

        Args:
            uris: the URIs (repeats are fetched once)
            failures: when given, URIs that fail are recorded here (URI →
                error) instead of raising
            progress: optional progress callback

        Returns:
            URI → cached file (failed URIs left out)

        Raises:
            InputError: without ``failures``, the first URI that failed (the
                others are cancelled or finish; completed downloads stay cached)
        """
        unique = list(dict.fromkeys(uris))
        paths: dict[str, Path] = {}
        todo = []
        for uri in unique:
            try:
                path = self.cache_path(uri)
            except InputError as error:
                if failures is None:
                    raise
                failures[uri] = error
                continue
            if path.is_file():
                paths[uri] = path
            else:
                todo.append(uri)
        with self._lock:
            self.stats.cache_hits += len(paths)
        if not todo:
            report(progress, 1.0, f"{len(unique)} objects already cached")
            return paths
        self._get_client()  # create it once, before threads race for it
        done = 0
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(todo))) as pool:
            futures = {pool.submit(self.fetch_to_cache, uri): uri for uri in todo}
            try:
                for future in as_completed(futures):
                    uri = futures[future]
                    try:
                        paths[uri] = future.result()
                    except InputError as error:
                        if failures is None:
                            raise
                        failures[uri] = error
                    done += 1
                    report(progress, done / len(todo), f"downloaded {done}/{len(todo)} from S3")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return {uri: paths[uri] for uri in unique if uri in paths}

    # -- internals ----------------------------------------------------------

    def _get_client(self):
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self):
        import boto3
        import botocore.exceptions
        from botocore.config import Config

        try:
            session = boto3.session.Session(profile_name=self.profile)
        except botocore.exceptions.ProfileNotFound:
            raise ConfigError(f"AWS profile {self.profile!r} is not in the shared AWS config") from None
        config = Config(
            retries={"total_max_attempts": 1},  # retried here, see the module docstring
            max_pool_connections=max(10, self.max_workers),
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            # S3-compatible stores are reached by path (bucket in the path,
            # not in the host name), which works for every one of them
            s3={"addressing_style": "path"} if self._endpoint_url else None,
        )
        try:
            return session.client("s3", endpoint_url=self._endpoint_url,
                                  region_name=self.region, config=config)
        except ValueError as error:  # e.g. an invalid endpoint URL
            raise ConfigError(f"cannot use S3 endpoint {self.endpoint!r}: {type(error).__name__}") from None

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return self._random.uniform(0.0, ceiling)

    def _download(self, uri: str, dest: Path) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                size = self._attempt(uri, dest)
            except _Retry as retry:
                if attempt >= self.max_attempts:
                    raise retry.final from None
                delay = self._backoff(attempt)
                with self._lock:
                    self.stats.retries += 1
                log.info("S3 %s: %s; retrying in %.2fs (attempt %d of %d)",
                         uri, retry.reason, delay, attempt + 1, self.max_attempts)
                self._sleep(delay)
                continue
            with self._lock:
                self.stats.downloads += 1
                self.stats.bytes_downloaded += size
            return

    def _attempt(self, uri: str, dest: Path) -> int:
        """One GET into a temporary file moved into the cache; returns its size."""
        import botocore.exceptions as bexc

        bucket, key = parse_s3_uri(uri)
        client = self._get_client()
        where = f"endpoint {self.endpoint}" if self.endpoint else "AWS S3"
        tmp_name = None
        try:
            response = client.get_object(Bucket=bucket, Key=key)
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
            size = 0
            with os.fdopen(fd, "wb") as out:
                body = response["Body"]
                try:
                    while chunk := body.read(_CHUNK):
                        out.write(chunk)
                        size += len(chunk)
                finally:
                    body.close()
            expected = response.get("ContentLength")
            if expected is not None and size != int(expected):
                raise _Retry(
                    f"body ended after {size} of {expected} bytes",
                    InputError(uri, f"download from {where} kept breaking off "
                               f"({size} of {expected} bytes) after {self.max_attempts} attempts"),
                )
            os.replace(tmp_name, dest)
            tmp_name = None
            return size
        except bexc.ClientError as error:
            raise self._client_error(uri, error, where) from None
        except (bexc.NoCredentialsError, bexc.PartialCredentialsError,
                bexc.CredentialRetrievalError):
            raise InputError(
                uri, "no usable AWS credentials (looked in the environment, the shared "
                "config/credentials files and the instance role); set them or pass a profile"
            ) from None
        except (bexc.EndpointConnectionError, bexc.ConnectTimeoutError, bexc.ReadTimeoutError,
                bexc.ConnectionClosedError, bexc.IncompleteReadError, bexc.ResponseStreamingError,
                bexc.ProxyConnectionError, bexc.ConnectionError) as error:
            # str(error) may repeat the endpoint URL as given (with userinfo):
            # only the error's class name is shown
            raise _Retry(
                type(error).__name__,
                InputError(uri, f"cannot download from {where}: {type(error).__name__} "
                           f"after {self.max_attempts} attempts"),
            ) from None
        except OSError as error:
            raise InputError(uri, f"cannot write the cache file under {self.cache_dir}: "
                             f"{error.strerror or error}") from None
        finally:
            if tmp_name is not None:
                Path(tmp_name).unlink(missing_ok=True)

    def _client_error(self, uri: str, error, where: str) -> Exception:
        info = error.response.get("Error", {}) or {}
        code = str(info.get("Code") or "")
        status = (error.response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
        if status == 403 or code in ("AccessDenied", "Forbidden", "InvalidAccessKeyId",
                                     "SignatureDoesNotMatch"):
            return InputError(uri, f"access denied by {where} (HTTP 403 {code}): check the "
                              "credentials, profile and bucket policy")
        if status == 404 or code in ("NoSuchKey", "NoSuchBucket", "NotFound", "404"):
            what = "bucket" if code == "NoSuchBucket" else "object"
            return InputError(uri, f"no such {what} on {where} (HTTP 404 {code})")
        if status == 429 or (status is not None and status >= 500) or code in RETRYABLE_CODES:
            return _Retry(
                f"HTTP {status} {code}".strip(),
                InputError(uri, f"{where} kept failing (HTTP {status} {code}) after "
                           f"{self.max_attempts} attempts"),
            )
        return InputError(uri, f"{where} refused the download (HTTP {status} {code})")


def fetch_s3_uri(
    uri: str,
    *,
    cache_dir: str | Path | None = None,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
) -> bytes:
    """The bytes of one S3 object, from the on-disk cache when already fetched.

    Example::

        data = fetch_s3_uri("s3://bucket/images/0001.jpg", profile="research")

    Args:
        uri: ``s3://bucket/key``
        cache_dir: cache folder (default ``$DATAOPS_S3_CACHE`` or
            ``<media root>/s3-cache``)
        endpoint_url: an S3-compatible endpoint
        profile: a shared-config profile
        region: AWS region

    Returns:
        the object's bytes

    Raises:
        InputError: bad URI, 403, 404, no credentials, or persistent failures
        ConfigError: unknown profile or unusable endpoint URL
    """
    fetcher = S3Fetcher(cache_dir=cache_dir, endpoint_url=endpoint_url, profile=profile,
                        region=region)
    return fetcher.fetch(uri)
