"""A real local Label Studio server, started as a subprocess.

Label Studio (``label-studio==1.23.2``) pins ~80 packages exactly, so it lives
in a virtual environment of its own (``scripts/install_labelstudio.sh``, or
``make labelstudio``) and dataops only runs its ``label-studio`` executable.
This module finds that executable, starts it without any prompt on a loopback
port with a fixed user and API token, waits until it answers, checks the
token, and stops it again. Only the standard library is used, so it works
without the ``labelstudio`` extra.

The user and token are stored in ``<data_dir>/dataops-credentials.json``
(mode 0600): Label Studio creates its user on the first start of a data
folder and ignores the user variables on later starts, so a restart must use
the same token. :func:`start_local_server` reuses the stored values.

The server is kept off the internet (no Sentry, no analytics, no version
check) and serves files under ``document_root`` through its Local Files
storage (``/data/local-files/?d=<relative path>``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dataops.errors import ConfigError

DEFAULT_PORT = 8080
DEFAULT_USERNAME = "admin@example.com"
LABEL_STUDIO_VERSION = "1.23.2"
CREDENTIALS_FILE = "dataops-credentials.json"
LOG_FILE = "label-studio.log"
ENV_FILE = "labelstudio.env"
_INSTALL_HINT = (
    "install it with `make labelstudio` (scripts/install_labelstudio.sh), which creates "
    "<repo>/.venv-labelstudio, or point DATAOPS_LABEL_STUDIO at a `label-studio` executable "
    "(DATAOPS_LABEL_STUDIO_VENV at its virtual environment)"
)
_POLL_S = 0.5
_TAIL_LINES = 20
# Variables of ours (or of Python) that must not reach the server's interpreter.
_SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "DJANGO_SETTINGS_MODULE",
                 "VIRTUAL_ENV", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY")
# Loopback requests never go through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class LocalServer:
    """A running local Label Studio server.

    Attributes:
        url: ``http://127.0.0.1:<port>``
        api_key: the user's (legacy) API token: ``Authorization: Token <api_key>``
        username: the user's e-mail (login of the web UI)
        password: the user's password
        data_dir: Label Studio's data folder (database, uploads, log, credentials)
        document_root: the folder Local Files storage may serve from
        process: the server process (``None`` once stopped)
        log_path: the server's stdout and stderr
    """

    url: str
    api_key: str
    username: str
    password: str
    data_dir: Path
    document_root: Path
    process: subprocess.Popen | None
    log_path: Path
    _lock: object = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:  # never shows the key or the password
        state = "running" if self.running else "stopped"
        return f"LocalServer(url={self.url!r}, username={self.username!r}, {state})"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def env(self) -> dict[str, str]:
        """The variables a Label Studio client reads: URL and API key."""
        return {"LABEL_STUDIO_URL": self.url, "LABEL_STUDIO_API_KEY": self.api_key}

    def stop(self, timeout: float = 20) -> None:
        """Stops the server: SIGTERM to its process group, then SIGKILL after ``timeout``.

        Safe to call more than once.
        """
        process, self.process = self.process, None
        try:
            if process is not None:
                _stop_process(process, timeout)
        finally:
            lock, self._lock = self._lock, None
            if lock is not None:
                lock.close()  # releases the data folder

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _stop_process(process: subprocess.Popen, timeout: float) -> None:
    """Terminates ``process`` and its process group (it was started as a session leader)."""

    def signal_group(sig: int) -> None:
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)

    if process.poll() is None:
        signal_group(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(signal.SIGKILL)
            process.wait(10)
    # No group signal once the leader is reaped: its id may be reused. Label
    # Studio runs Django's runserver with --noreload: a single process.


def _repo_root() -> Path:
    """The checkout holding this package (``lib/`` is installed editable)."""
    return Path(__file__).resolve().parents[1]


def _executable_in(venv: Path) -> Path:
    return venv / ("Scripts/label-studio.exe" if os.name == "nt" else "bin/label-studio")


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_label_studio(venv: str | Path | None = None) -> Path:
    """Finds the ``label-studio`` executable.

    Looked for in order: ``venv`` (a virtual environment, or the executable
    itself), ``$DATAOPS_LABEL_STUDIO`` (an executable),
    ``$DATAOPS_LABEL_STUDIO_VENV/bin``, ``<repo>/.venv-labelstudio/bin``, then
    ``PATH``. An explicit ``venv`` or variable that holds no executable is an
    error rather than skipped.

    Args:
        venv: a virtual environment (or executable) to use instead of the search

    Returns:
        the executable's path

    Raises:
        ConfigError: nothing found; the message says how to install it
    """
    if venv is not None:
        path = Path(venv).expanduser()
        candidate = path if path.is_file() else _executable_in(path)
        if not _is_executable(candidate):
            raise ConfigError(f"no label-studio executable in {path}; {_INSTALL_HINT}")
        return candidate
    value = os.environ.get("DATAOPS_LABEL_STUDIO")
    if value:
        candidate = Path(value).expanduser()
        if not _is_executable(candidate):
            raise ConfigError(
                f"DATAOPS_LABEL_STUDIO={value} is not an executable; {_INSTALL_HINT}")
        return candidate
    value = os.environ.get("DATAOPS_LABEL_STUDIO_VENV")
    if value:
        candidate = _executable_in(Path(value).expanduser())
        if not _is_executable(candidate):
            raise ConfigError(
                f"DATAOPS_LABEL_STUDIO_VENV={value} holds no label-studio executable "
                f"({candidate}); {_INSTALL_HINT}")
        return candidate
    candidate = _executable_in(_repo_root() / ".venv-labelstudio")
    if _is_executable(candidate):
        return candidate
    found = shutil.which("label-studio")
    if found:
        return Path(found)
    raise ConfigError(f"Label Studio is not installed (no label-studio executable found); "
                      f"{_INSTALL_HINT}")


def _http_get(url: str, *, token: str | None = None, timeout: float = 5) -> tuple[int, bytes]:
    """``(status, body)`` of a GET; raises ``OSError`` when nothing answers."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Token {token}")
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def _is_up(url: str) -> bool:
    try:
        status, body = _http_get(f"{url}/health", timeout=2)
    except OSError:
        return False
    if status != 200:
        return False
    try:
        return json.loads(body).get("status") == "UP"
    except (ValueError, AttributeError):
        return False


def wait_healthy(url: str, timeout: float) -> None:
    """Polls ``<url>/health`` every 0.5 s until it answers ``{"status": "UP"}``.

    Raises:
        ConfigError: not up within ``timeout`` seconds
    """
    deadline = time.monotonic() + timeout
    while not _is_up(url):
        if time.monotonic() >= deadline:
            raise ConfigError(f"Label Studio at {url} is not up after {timeout:.0f} s")
        time.sleep(_POLL_S)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_in_use(port: int) -> bool:
    """Whether something listens on ``port`` (Label Studio checks ``localhost``).

    Label Studio silently moves to the next port when its port is taken, so a
    taken port is refused here instead.
    """
    for host in ("127.0.0.1", "localhost"):
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
    return False


def _lock_data_dir(data_dir: Path):
    """Locks ``data_dir`` for one server (two on one SQLite database corrupt it).

    Returns the open lock file; closing it releases the lock (also when this
    process dies).
    """
    lock = (data_dir / ".dataops-server.lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise ConfigError(f"{data_dir}: another Label Studio server started by dataops uses this "
                          f"data folder; stop it first") from None
    return lock


def _port_moved(log_path: Path, offset: int) -> bool:
    """Whether Label Studio said its port was taken (it then silently takes the next one)."""
    try:
        with log_path.open("rb") as log:
            log.seek(offset)
            return b"is in use." in log.read()
    except OSError:
        return False


def _write_private(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` with mode 0600 (atomically, never world-readable)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _resolve_credentials(data_dir: Path, username: str | None, password: str | None,
                         api_key: str | None) -> tuple[str, str, str]:
    """The user for ``data_dir``: stored ones, else the arguments, else generated.

    Stores them (0600) before the first start, so that a start interrupted
    after Label Studio created its user can still be resumed.
    """
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text())
            stored = {key: str(stored[key]) for key in ("username", "password", "api_key")}
        except (ValueError, KeyError, TypeError, OSError) as error:
            raise ConfigError(f"{path}: unreadable stored Label Studio credentials "
                              f"({type(error).__name__}); delete the data folder to start afresh"
                              ) from None
        given = {"username": username, "password": password, "api_key": api_key}
        clashing = [key for key, value in given.items()
                    if value is not None and value != stored[key]]
        if clashing:
            raise ConfigError(
                f"{data_dir}: this Label Studio data folder already has its user; the given "
                f"{', '.join(clashing)} differ from the stored ones in {path} and Label Studio "
                f"would ignore them (use the stored values, or a new data folder)")
        return stored["username"], stored["password"], stored["api_key"]
    if (data_dir / "label_studio.sqlite3").exists() and api_key is None:
        raise ConfigError(
            f"{data_dir} holds a Label Studio database created outside dataops (no {CREDENTIALS_FILE});"
            f" its user's token is unknown: pass api_key (and username/password), or use a new data"
            f" folder")
    username = username or DEFAULT_USERNAME
    password = password or secrets.token_urlsafe(18)
    api_key = api_key or secrets.token_hex(20)
    if len(api_key) <= 5:  # Label Studio silently ignores shorter tokens
        raise ConfigError("api_key must be longer than 5 characters")
    _write_private(path, json.dumps(
        {"username": username, "password": password, "api_key": api_key}, indent=2) + "\n")
    return username, password, api_key


def _server_env(*, data_dir: Path, document_root: Path, username: str, password: str,
                api_key: str) -> dict[str, str]:
    """The environment of the server: ours, minus Python's, plus its settings.

    ``LABEL_STUDIO_<X>`` takes precedence over a bare ``<X>`` (Label Studio
    also reads ``HOST``, ``PORT``, ``USERNAME``, ``CI``, ...), so the
    settings that matter are all given with the prefix.
    """
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED_ENV}
    env.update({
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": api_key,
        # without it the fixed token above gets 401 (1.23 wants JWT tokens)
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        # offline: no error reporting, analytics or version check
        "LABEL_STUDIO_SENTRY_DSN": "",
        "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
        # cloud storages pointing at 127.0.0.1 (a local S3) are allowed
        "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
        # relative URLs (a bare HOST would make absolute ones); CI=true in the
        # environment would add Label Studio's own migration linter app
        "LABEL_STUDIO_HOST": "",
        "LABEL_STUDIO_CI": "false",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _log_tail(log_path: Path, offset: int, secrets_: tuple[str, ...]) -> str:
    """The last lines the server wrote since ``offset``, with secrets blanked."""
    try:
        with log_path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    lines = text.rstrip().splitlines()[-_TAIL_LINES:]
    tail = "\n".join(lines) or "(the log is empty)"
    for secret in secrets_:
        if secret:
            tail = tail.replace(secret, "***")
    return tail


def start_local_server(
    *,
    data_dir: str | Path,
    document_root: str | Path,
    port: int | None = None,
    username: str | None = None,
    password: str | None = None,
    api_key: str | None = None,
    executable: str | Path | None = None,
    timeout: float = 240,
    log_path: str | Path | None = None,
) -> LocalServer:
    """Starts Label Studio on ``127.0.0.1`` and waits until its API accepts the token.

    The first start of a data folder runs the database migrations (35-85 s);
    later starts take ~10 s. The user (``username``, ``password``,
    ``api_key``) is stored in ``<data_dir>/dataops-credentials.json`` and
    reused on later starts; values left ``None`` come from there, or are
    generated on the first start (``admin@example.com``, random password,
    ``secrets.token_hex(20)`` token).

    Args:
        data_dir: Label Studio's data folder (created, mode 0700)
        document_root: an existing folder Local Files storage may serve from
        port: the port; ``None`` or 0 picks a free one
        username: the user's e-mail (default ``admin@example.com``)
        password: the user's password (default: generated)
        api_key: the user's API token (default: generated)
        executable: the ``label-studio`` executable or its venv (default:
            :func:`find_label_studio`)
        timeout: seconds to wait for the server to come up
        log_path: the server's output (default ``<data_dir>/label-studio.log``;
            appended to)

    Returns:
        the running server; call :meth:`LocalServer.stop` (or use it as a
        context manager)

    Raises:
        ConfigError: Label Studio is not installed, the port is taken,
            ``document_root`` is not a folder, the stored user clashes with
            the arguments, or the server did not come up or refused the
            token (the message ends with the last lines of its log)
    """
    exe = find_label_studio(executable)
    data_dir = Path(data_dir).expanduser().resolve()
    document_root = Path(document_root).expanduser().resolve()
    if not document_root.is_dir():
        raise ConfigError(f"document root {document_root} is not a folder")
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"data folder {data_dir} is not a folder")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = _lock_data_dir(data_dir)
    try:
        username, password, api_key = _resolve_credentials(data_dir, username, password, api_key)
        if port:
            if _port_in_use(port):
                raise ConfigError(f"port {port} is already in use (another server?); choose "
                                  f"another port, or none for a free one")
        else:
            port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = Path(log_path).expanduser().resolve() if log_path else data_dir / LOG_FILE
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = _server_env(data_dir=data_dir, document_root=document_root, username=username,
                          password=password, api_key=api_key)
        command = [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1",
                   "--port", str(port), "--enable-legacy-api-token"]
        with log_path.open("ab") as log:
            offset = log.tell()
            log.write(f"--- dataops: {time.strftime('%Y-%m-%d %H:%M:%S')} starting {exe} on "
                      f"{url} (data {data_dir}) ---\n".encode())
            log.flush()
            try:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, env=env, cwd=data_dir,
                                           start_new_session=True)
            except OSError as error:
                raise ConfigError(f"cannot run {exe}: {error}; {_INSTALL_HINT}") from None
    except BaseException:
        lock.close()
        raise
    server = LocalServer(url=url, api_key=api_key, username=username, password=password,
                         data_dir=data_dir, document_root=document_root, process=process,
                         log_path=log_path, _lock=lock)

    def fail(problem: str) -> ConfigError:
        server.stop()
        tail = _log_tail(log_path, offset, (api_key, password))
        return ConfigError(f"Label Studio ({exe}) {problem}; log {log_path}, last lines:\n{tail}")

    try:
        deadline = time.monotonic() + timeout
        while not _is_up(url):
            code = process.poll()
            if _port_moved(log_path, offset):
                raise fail(f"found port {port} taken and moved to another one")
            if code is not None:
                raise fail(f"exited with code {code} before it was up on {url}")
            if time.monotonic() >= deadline:
                raise fail(f"was not up on {url} after {timeout:.0f} s")
            time.sleep(_POLL_S)
        if process.poll() is not None:  # something else answers on that port
            raise fail(f"exited with code {process.returncode}, yet {url} answers")
        try:
            status, _ = _http_get(f"{url}/api/projects?page_size=1", token=api_key, timeout=30)
        except OSError as error:
            raise fail(f"stopped answering on {url} ({error})") from None
        if status == 401:
            raise fail(
                "refused the API token (401): the server needs "
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true, and a data folder keeps the user "
                f"of its first start (the token stored in {data_dir / CREDENTIALS_FILE})")
        if status != 200:
            raise fail(f"answered {status} to GET /api/projects")
    except BaseException:  # KeyboardInterrupt included: never leave it running
        server.stop()
        raise
    return server


def write_env_file(server: LocalServer, path: str | Path) -> Path:
    """Writes ``export LABEL_STUDIO_URL=...`` and ``..._API_KEY=...`` (mode 0600) for ``source``."""
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"export {key}='{value}'" for key, value in server.env().items()]
    _write_private(path, "\n".join(lines) + "\n")
    return path


def serve(data_dir: str | Path, document_root: str | Path, port: int | None = DEFAULT_PORT,
          env_file: str | Path | None = None, *, out=None) -> int:
    """Runs a local Label Studio server until Ctrl-C (or SIGTERM); for ``dataops labelstudio serve``.

    Starts the server (see :func:`start_local_server`; the same token on every
    start of ``data_dir``), writes ``env_file`` (default
    ``<data_dir>/labelstudio.env``, mode 0600) with ``LABEL_STUDIO_URL`` and
    ``LABEL_STUDIO_API_KEY`` to ``source``, prints the URL, the user and
    where the env file and password are (never the key or password), and
    blocks until interrupted, then stops the server.

    Args:
        data_dir: Label Studio's data folder
        document_root: the folder Local Files storage may serve from
        port: the port (``None``/0: a free one)
        env_file: where to write the variables
        out: where to print (default ``sys.stdout``)

    Returns:
        0 after Ctrl-C or SIGTERM

    Raises:
        ConfigError: the server did not start, or died while serving
    """
    out = out or sys.stdout
    data_dir = Path(data_dir).expanduser().resolve()
    print(f"starting Label Studio (data {data_dir}; the first start of a data folder takes "
          f"about a minute) ...", file=out, flush=True)

    def on_sigterm(signum, frame) -> None:
        raise KeyboardInterrupt

    # SIGTERM (kill, systemd, a container stop) stops the server like Ctrl-C,
    # also while it is starting; handlers can only be set from the main thread.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    server = None
    try:
        started = time.monotonic()
        server = start_local_server(data_dir=data_dir, document_root=document_root, port=port)
        env_path = write_env_file(server, env_file or data_dir / ENV_FILE)
        print(f"Label Studio is up at {server.url} (in {time.monotonic() - started:.0f} s)\n"
              f"  user:          {server.username} (password in {data_dir / CREDENTIALS_FILE})\n"
              f"  client env:    source {env_path}\n"
              f"  document root: {server.document_root}\n"
              f"  log:           {server.log_path}\n"
              f"press Ctrl-C to stop", file=out, flush=True)
        while True:
            code = server.process.poll() if server.process else 0
            if code is not None:
                tail = _log_tail(server.log_path, 0, (server.api_key, server.password))
                raise ConfigError(f"Label Studio exited with code {code} while serving; log "
                                  f"{server.log_path}, last lines:\n{tail}")
            time.sleep(_POLL_S)
    except KeyboardInterrupt:
        print("stopping Label Studio ...", file=out, flush=True)
        return 0
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if server is not None:
            server.stop()
