"""The local Label Studio server (``dataops.labelstudio_server``) and its test harness.

Fast tests run the module against a fake ``label-studio`` executable (a small
stdlib HTTP server that behaves like the real one at the edges: ``/health``,
token check, early exit). Tests marked ``integration`` use the session's real
server (``label_studio`` fixture, ``ls_harness.py``) and the ``ls_proxy``
that can play a dead server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import ls_harness  # loaded by conftest.py, which also registers its fixtures
import pytest

from dataops.errors import ConfigError
from dataops.labelstudio_server import (
    CREDENTIALS_FILE,
    LocalServer,
    find_label_studio,
    start_local_server,
    wait_healthy,
    write_env_file,
)

FAKE_LABEL_STUDIO = """\
#!{python}
# A stand-in for `label-studio start`: checks the command line and the
# environment dataops gives it, then serves /health and a token-checked
# /api/projects. FAKE_LS_MODE: ok | exit (prints the secrets, exits 3) |
# hang (never listens) | refuse (401 to any token) | die (exits 4 after 1 s) |
# moved (says its port is taken, as Label Studio does before it takes the next).
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
data_dir = os.environ["LABEL_STUDIO_BASE_DATA_DIR"]
with open(os.path.join(data_dir, "fake-start.json"), "w") as out:
    json.dump({{"args": args, "pid": os.getpid(), "cwd": os.getcwd(), "env": dict(os.environ)}}, out)
mode = os.environ.get("FAKE_LS_MODE", "ok")
token = os.environ["LABEL_STUDIO_USER_TOKEN"]
print("fake label-studio starting", flush=True)
if mode == "exit":
    print("boom: token", token, "password", os.environ["LABEL_STUDIO_PASSWORD"], flush=True)
    sys.exit(3)
if mode == "moved":
    print("* Port 1 is in use.\\n* Trying to start at 2", flush=True)
if mode in ("hang", "moved"):
    time.sleep(600)
if mode == "die":
    threading.Timer(1.0, os._exit, (4,)).start()
port = int(args[args.index("--port") + 1])


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == "/health":
            status, body = 200, {{"status": "UP"}}
        elif self.headers.get("Authorization") == "Token " + token and mode != "refuse":
            status, body = 200, {{"count": 0, "results": []}}
        else:
            status, body = 401, {{"detail": "Invalid token."}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer((args[args.index("--internal-host") + 1], port), Handler).serve_forever()
"""


@pytest.fixture
def fake_ls(tmp_path: Path) -> Path:
    """The fake ``label-studio`` executable."""
    path = tmp_path / "fake-venv" / "bin" / "label-studio"
    path.parent.mkdir(parents=True)
    path.write_text(FAKE_LABEL_STUDIO.format(python=sys.executable))
    path.chmod(0o755)
    return path


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A (not yet existing) data folder and an existing document root."""
    root = tmp_path / "files"
    root.mkdir()
    return tmp_path / "data", root


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _client(**kwargs) -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=30, **kwargs)


# --- finding the executable -------------------------------------------------------


@pytest.mark.parametrize("setup", [
    # an explicit venv without label-studio
    "arg",
    # DATAOPS_LABEL_STUDIO names a missing file
    "env_exe",
    # DATAOPS_LABEL_STUDIO_VENV is an empty folder
    "env_venv",
    # nothing anywhere: no repo venv, nothing on PATH
    "nothing",
])
def test_find_label_studio_missing_names_the_fix(setup, tmp_path, monkeypatch):
    monkeypatch.delenv("DATAOPS_LABEL_STUDIO", raising=False)
    monkeypatch.delenv("DATAOPS_LABEL_STUDIO_VENV", raising=False)
    monkeypatch.setattr("dataops.labelstudio_server._repo_root", lambda: tmp_path / "repo")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    arg = None
    if setup == "arg":
        arg = tmp_path / "no-venv"
    elif setup == "env_exe":
        monkeypatch.setenv("DATAOPS_LABEL_STUDIO", str(tmp_path / "nope" / "label-studio"))
    elif setup == "env_venv":
        monkeypatch.setenv("DATAOPS_LABEL_STUDIO_VENV", str(tmp_path))
    with pytest.raises(ConfigError) as error:
        find_label_studio(arg)
    assert "make labelstudio" in str(error.value)
    assert "install_labelstudio.sh" in str(error.value)


@pytest.mark.parametrize("winner", [
    # the argument (a venv) beats both variables
    "arg",
    # DATAOPS_LABEL_STUDIO beats DATAOPS_LABEL_STUDIO_VENV and the repo venv
    "env_exe",
    # DATAOPS_LABEL_STUDIO_VENV beats the repo venv
    "env_venv",
    # <repo>/.venv-labelstudio beats PATH
    "repo",
    # PATH is the last resort
    "path",
])
def test_find_label_studio_order(winner, tmp_path, monkeypatch):
    def make(venv: str) -> Path:
        exe = tmp_path / venv / "bin" / "label-studio"
        exe.parent.mkdir(parents=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
        return exe

    order = ["arg", "env_exe", "env_venv", "repo", "path"]
    exes = {name: make(name) for name in order[order.index(winner):]}
    monkeypatch.delenv("DATAOPS_LABEL_STUDIO", raising=False)
    monkeypatch.delenv("DATAOPS_LABEL_STUDIO_VENV", raising=False)
    monkeypatch.setattr("dataops.labelstudio_server._repo_root", lambda: tmp_path / "repo-root")
    if "env_exe" in exes:
        monkeypatch.setenv("DATAOPS_LABEL_STUDIO", str(exes["env_exe"]))
    if "env_venv" in exes:
        monkeypatch.setenv("DATAOPS_LABEL_STUDIO_VENV", str(tmp_path / "env_venv"))
    if "repo" in exes:
        (tmp_path / "repo-root").mkdir()
        (tmp_path / "repo-root" / ".venv-labelstudio").symlink_to(tmp_path / "repo")
    monkeypatch.setenv("PATH", str(exes["path"].parent))
    arg = tmp_path / "arg" if "arg" in exes else None
    assert find_label_studio(arg).resolve() == exes[winner].resolve()


def test_start_local_server_without_executable_names_the_fix(dirs):
    data_dir, root = dirs
    with pytest.raises(ConfigError, match="make labelstudio") as error:
        start_local_server(data_dir=data_dir, document_root=root,
                           executable=data_dir.parent / "nowhere" / "label-studio")
    assert "install_labelstudio.sh" in str(error.value)
    assert not data_dir.exists()  # nothing written before the executable is found


# --- starting and stopping (fake executable) ----------------------------------------


def test_start_stop_and_restart_keep_the_credentials(fake_ls, dirs, monkeypatch):
    data_dir, root = dirs
    monkeypatch.setenv("FAKE_LS_MODE", "ok")
    monkeypatch.setenv("PYTHONPATH", "/must/not/reach/the/server")
    monkeypatch.setenv("HOST", "http://elsewhere.example")
    with start_local_server(data_dir=data_dir, document_root=root, executable=fake_ls) as server:
        assert server.running
        assert server.url.startswith("http://127.0.0.1:")
        assert server.env() == {"LABEL_STUDIO_URL": server.url,
                                "LABEL_STUDIO_API_KEY": server.api_key}
        assert len(server.api_key) == 40 and server.username == "admin@example.com"
        assert server.api_key not in repr(server) and server.password not in repr(server)
        started = json.loads((data_dir / "fake-start.json").read_text())
        pid = started["pid"]
    assert not server.running and server.process is None
    assert _pid_gone(pid)

    # the command line and environment Label Studio gets
    args, env = started["args"], started["env"]
    assert args[0] == "start" and "--no-browser" in args and "--enable-legacy-api-token" in args
    assert args[args.index("--internal-host") + 1] == "127.0.0.1"
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == str(data_dir.resolve())
    assert env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] == str(root.resolve())
    assert env["LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"] == "true"
    assert env["LABEL_STUDIO_SENTRY_DSN"] == env["LABEL_STUDIO_FRONTEND_SENTRY_DSN"] == ""
    assert env["LABEL_STUDIO_COLLECT_ANALYTICS"] == env["LABEL_STUDIO_LATEST_VERSION_CHECK"] == "false"
    assert env["LABEL_STUDIO_HOST"] == "" and env["LABEL_STUDIO_CI"] == "false"
    assert "PYTHONPATH" not in env
    assert started["cwd"] == str(data_dir.resolve())

    # stored 0600, nothing secret in the log
    creds_path = data_dir / CREDENTIALS_FILE
    assert stat.S_IMODE(creds_path.stat().st_mode) == 0o600
    creds = json.loads(creds_path.read_text())
    assert creds == {"username": server.username, "password": server.password,
                     "api_key": server.api_key}
    log = server.log_path.read_text()
    assert "fake label-studio starting" in log
    assert server.api_key not in log and server.password not in log

    # a restart reuses them (Label Studio keeps the user of the first start)
    with start_local_server(data_dir=data_dir, document_root=root, executable=fake_ls) as again:
        assert (again.api_key, again.password) == (server.api_key, server.password)
        assert again.running


@pytest.mark.parametrize("mode, timeout, message", [
    # exits at once, printing the secrets: the tail is shown, the secrets blanked
    ("exit", 30, "exited with code 3"),
    # never listens: given up after the timeout
    ("hang", 1.5, "was not up"),
    # up, but refuses the token: the message names the legacy-token variable
    ("refuse", 30, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true"),
    # its port was taken meanwhile: it would answer elsewhere; given up at once
    ("moved", 30, "taken and moved"),
])
def test_start_failures_stop_the_process_and_show_the_log(mode, timeout, message, fake_ls, dirs,
                                                          monkeypatch):
    data_dir, root = dirs
    monkeypatch.setenv("FAKE_LS_MODE", mode)
    with pytest.raises(ConfigError, match=message) as error:
        start_local_server(data_dir=data_dir, document_root=root, executable=fake_ls,
                           timeout=timeout)
    creds = json.loads((data_dir / CREDENTIALS_FILE).read_text())
    text = str(error.value)
    assert "fake label-studio starting" in text  # the log's tail
    assert creds["api_key"] not in text and creds["password"] not in text
    if mode == "exit":
        assert "boom: token *** password ***" in text
    assert _pid_gone(json.loads((data_dir / "fake-start.json").read_text())["pid"])


@pytest.mark.parametrize("given", [
    # another token than the stored one: Label Studio would ignore it (401)
    {"api_key": "f" * 40},
    # another user
    {"username": "someone@example.com"},
    # another password
    {"password": "other-password"},
])
def test_stored_credentials_clash_is_refused_before_starting(given, fake_ls, dirs):
    data_dir, root = dirs
    data_dir.mkdir()
    (data_dir / CREDENTIALS_FILE).write_text(json.dumps(
        {"username": "admin@example.com", "password": "pw-stored", "api_key": "a" * 40}))
    with pytest.raises(ConfigError, match="differ from the stored ones"):
        start_local_server(data_dir=data_dir, document_root=root, executable=fake_ls, **given)
    assert not (data_dir / "fake-start.json").exists()


@pytest.mark.parametrize("problem, match", [
    # a taken port: Label Studio would silently move to the next one
    ("port", "already in use"),
    # a document root that does not exist
    ("root", "is not a folder"),
    # an existing Label Studio database whose token dataops does not know
    ("foreign_db", "created outside dataops"),
    # a token Label Studio would ignore (5 characters or fewer)
    ("short_key", "longer than 5"),
])
def test_start_refuses_bad_setups(problem, match, fake_ls, dirs):
    data_dir, root = dirs
    kwargs = {}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        if problem == "port":
            kwargs["port"] = busy.getsockname()[1]
        elif problem == "root":
            root = root / "missing"
        elif problem == "foreign_db":
            data_dir.mkdir()
            (data_dir / "label_studio.sqlite3").write_bytes(b"")
        elif problem == "short_key":
            kwargs["api_key"] = "abc"
        with pytest.raises(ConfigError, match=match):
            start_local_server(data_dir=data_dir, document_root=root, executable=fake_ls, **kwargs)
    assert not (data_dir / "fake-start.json").exists()


def test_one_server_per_data_dir(fake_ls, dirs, monkeypatch):
    data_dir, root = dirs
    monkeypatch.setenv("FAKE_LS_MODE", "ok")
    with start_local_server(data_dir=data_dir, document_root=root, executable=fake_ls), \
            pytest.raises(ConfigError, match="uses this data folder"):
        start_local_server(data_dir=data_dir, document_root=root, executable=fake_ls)
    # released by stop()
    with start_local_server(data_dir=data_dir, document_root=root, executable=fake_ls) as again:
        assert again.running


def test_unrunnable_executable(dirs, tmp_path):
    data_dir, root = dirs
    exe = tmp_path / "label-studio"
    exe.write_bytes(b"\x00\x01 not a program")
    exe.chmod(0o755)
    with pytest.raises(ConfigError, match="cannot run"):
        start_local_server(data_dir=data_dir, document_root=root, executable=exe)
    # the data folder is not left locked
    with pytest.raises(ConfigError, match="cannot run"):
        start_local_server(data_dir=data_dir, document_root=root, executable=exe)


def test_wait_healthy_times_out():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ConfigError, match="not up after"):
        wait_healthy(f"http://127.0.0.1:{port}", timeout=1)
    assert time.monotonic() - started < 10


def test_env_file_is_private_and_sourceable(tmp_path):
    server = LocalServer(url="http://127.0.0.1:1234", api_key="k" * 40, username="u",
                         password="p", data_dir=tmp_path, document_root=tmp_path,
                         process=None, log_path=tmp_path / "log")
    path = write_env_file(server, tmp_path / "sub" / "ls.env")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = subprocess.run(["bash", "-c", f'source "{path}"; echo "$LABEL_STUDIO_URL $LABEL_STUDIO_API_KEY"'],
                           capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["http://127.0.0.1:1234", "k" * 40]


# --- serve (fake executable, in a subprocess) ------------------------------------------

_SERVE = "import sys; from dataops.labelstudio_server import serve; sys.exit(serve(*sys.argv[1:3], 0, None))"


@pytest.mark.parametrize("mode", [
    # serves until SIGTERM, then stops the server and exits 0
    "ok",
    # the server dies while serving: an error, exit status not 0
    "die",
])
def test_serve(mode, fake_ls, dirs):
    data_dir, root = dirs
    env = dict(os.environ, FAKE_LS_MODE=mode, DATAOPS_LABEL_STUDIO=str(fake_ls))
    process = subprocess.Popen([sys.executable, "-c", _SERVE, str(data_dir), str(root)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        env_file = data_dir / "labelstudio.env"
        deadline = time.monotonic() + 30
        while not env_file.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert env_file.exists(), process.stderr.read() if process.poll() is not None else "timeout"
        if mode == "ok":
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    creds = json.loads((data_dir / CREDENTIALS_FILE).read_text())
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert f"LABEL_STUDIO_API_KEY='{creds['api_key']}'" in env_file.read_text()
    assert "Label Studio is up at http://127.0.0.1:" in out
    assert "admin@example.com" in out and str(env_file) in out
    assert creds["api_key"] not in out + err and creds["password"] not in out + err
    assert _pid_gone(json.loads((data_dir / "fake-start.json").read_text())["pid"])
    if mode == "ok":
        assert process.returncode == 0, err
        assert "stopping Label Studio" in out
    else:
        assert process.returncode != 0
        assert "exited with code 4 while serving" in err


# --- the real server -------------------------------------------------------------------


@pytest.mark.integration
def test_real_server_is_up_and_checks_the_token(label_studio):
    with _client(base_url=label_studio.url) as client:
        assert client.get("/health").json() == {"status": "UP"}
        answer = client.get("/api/projects", params={"page_size": 1},
                            headers={"Authorization": f"Token {label_studio.api_key}"})
        assert answer.status_code == 200 and "results" in answer.json()
        # a wrong token and no token are refused
        wrong = client.get("/api/projects", headers={"Authorization": "Token " + "0" * 40})
        assert wrong.status_code == 401
        assert client.get("/api/projects").status_code == 401


@pytest.mark.integration
def test_real_server_serves_local_files_through_the_proxy(label_studio, ls_proxy):
    folder = label_studio.document_root / "images"
    folder.mkdir(exist_ok=True)
    payload = os.urandom(300_000)  # binary, larger than one copy chunk
    (folder / "a.bin").write_bytes(payload)
    auth = {"Authorization": f"Token {label_studio.api_key}"}
    with _client(base_url=ls_proxy.url, headers=auth) as client:
        project = client.post("/api/projects", json={"title": "local files"})
        assert project.status_code == 201, project.text
        pid = project.json()["id"]
        try:
            storage = client.post("/api/storages/localfiles", json={
                "project": pid, "path": str(folder), "regex_filter": ".*", "use_blob_urls": True})
            assert storage.status_code == 201, storage.text
            answer = client.get("/data/local-files/", params={"d": "images/a.bin"})
            assert answer.status_code == 200
            assert answer.content == payload
            # outside the storage's folder: not served
            (label_studio.document_root / "secret.txt").write_text("no")
            assert client.get("/data/local-files/", params={"d": "secret.txt"}).status_code == 404
        finally:
            client.delete(f"/api/projects/{pid}")


@pytest.mark.integration
@pytest.mark.parametrize("after", [
    # dead at once
    0,
    # two more requests answered, then dead
    2,
])
def test_proxy_forwards_then_goes_away_then_comes_back(after, label_studio, ls_proxy):
    auth = {"Authorization": f"Token {label_studio.api_key}"}
    with _client(base_url=label_studio.url, headers=auth) as direct, \
            _client(base_url=ls_proxy.url, headers=auth) as proxied:
        # GET and a POST with a body are forwarded unchanged
        assert proxied.get("/api/projects").json() == direct.get("/api/projects").json()
        created = proxied.post("/api/projects", json={"title": f"via proxy {after}"})
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        try:
            assert direct.get(f"/api/projects/{pid}").json()["title"] == f"via proxy {after}"
            assert ls_proxy.requests == [("GET", "/api/projects"), ("POST", "/api/projects")]

            ls_proxy.go_away(after=after)
            for _ in range(after):  # the kept-alive connection still works for these
                assert proxied.get(f"/api/projects/{pid}").status_code == 200
            assert ls_proxy.gone
            with pytest.raises(httpx.TransportError):
                proxied.get(f"/api/projects/{pid}")
            with _client(base_url=ls_proxy.url) as fresh, pytest.raises(httpx.TransportError):
                fresh.get("/health")  # a new connection too
            assert len(ls_proxy.requests) == 2 + after
            assert ls_proxy.dropped  # counted, never forwarded

            ls_proxy.restore()
            assert proxied.get(f"/api/projects/{pid}").json()["id"] == pid
        finally:
            assert direct.delete(f"/api/projects/{pid}").status_code == 204


@pytest.mark.integration
def test_proxy_go_away_now_breaks_a_kept_alive_connection(label_studio, ls_proxy):
    with _client(base_url=ls_proxy.url) as client:
        assert client.get("/health").status_code == 200
        ls_proxy.go_away_now()
        with pytest.raises(httpx.TransportError):
            client.get("/health")
        ls_proxy.restore()
        assert client.get("/health").json() == {"status": "UP"}
    assert ls_proxy.requests == [("GET", "/health"), ("GET", "/health")]
    assert ls_proxy.dropped[0] == ("GET", "/health")


@pytest.mark.integration
@pytest.mark.slow
def test_real_restart_on_the_same_data_dir_keeps_token_and_data(tmp_path):
    ls_harness.require_label_studio()
    root = tmp_path / "files"
    root.mkdir()
    timings = {}
    started = time.monotonic()
    with start_local_server(data_dir=tmp_path / "data", document_root=root) as first:
        timings["fresh"] = time.monotonic() - started
        auth = {"Authorization": f"Token {first.api_key}"}
        with _client(base_url=first.url, headers=auth) as client:
            pid = client.post("/api/projects", json={"title": "kept"}).json()["id"]
    assert not first.running

    # another token on the same data folder is refused before starting
    with pytest.raises(ConfigError, match="differ from the stored ones"):
        start_local_server(data_dir=tmp_path / "data", document_root=root, api_key="e" * 40)

    started = time.monotonic()
    with start_local_server(data_dir=tmp_path / "data", document_root=root) as second:
        timings["restart"] = time.monotonic() - started
        assert second.api_key == first.api_key
        with _client(base_url=second.url, headers=auth) as client:
            assert client.get(f"/api/projects/{pid}").json()["title"] == "kept"
    print(f"label studio start: fresh {timings['fresh']:.1f} s, restart {timings['restart']:.1f} s")
