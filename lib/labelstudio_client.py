"""The network edge to a Label Studio server (label-studio-sdk 2.x).

Every call to the server goes through :class:`LabelStudioClient`. It uses
the SDK's 2.x client (``label_studio_sdk.client.LabelStudio``) for the typed
endpoints (projects, task import, users, storages, annotations) and the same
client's authenticated ``httpx`` session for the three calls the SDK does not
model the way we need them:

- ``POST /api/projects/<id>/import?commit_to_project=false`` with several
  files in one multipart body (the SDK's ``import_tasks`` takes task JSON
  only; the server keeps one file per multipart *name*, so each file gets its
  own);
- ``GET /api/projects/<id>/file-uploads`` (the stored names of those files);
- ``GET /api/tasks`` pages as plain JSON with the Data Manager ``query``
  filter and the ``total`` count (the SDK's pager builds a pydantic object per
  task and hides the total; the pure codec in
  :mod:`dataops.formats.label_studio` reads plain dicts).

Secrets: the server URL and the API key live only in this object. No error
raised from here contains either (exceptions from httpx name the URL, so they
are replaced, not chained), and nothing here logs them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataops.errors import ConfigError, DataOpsError

#: environment variables read for the server URL, in order
URL_VARIABLES = ("LABEL_STUDIO_URL", "FIFTYONE_LABELSTUDIO_URL")
#: environment variables read for the API key, in order
KEY_VARIABLES = ("LABEL_STUDIO_API_KEY", "FIFTYONE_LABELSTUDIO_API_KEY")

DEFAULT_TIMEOUT = 60.0


class LabelStudioError(DataOpsError):
    """The Label Studio server refused or failed a request."""


class ServerUnavailableError(LabelStudioError):
    """The server could not be reached, or went away in the middle of a call."""


class AuthenticationError(LabelStudioError, ConfigError):
    """The server rejected the API key."""


class ProjectNotFoundError(LabelStudioError):
    """A project recorded in the dataset no longer exists on the server."""

    def __init__(self, project_id: int, message: str) -> None:
        self.project_id = project_id
        super().__init__(message)


@dataclass(frozen=True)
class Connection:
    """Where the server is and how to authenticate.

    The ``repr`` hides both values, so a connection printed by accident (a
    debugger, a log line, an App error) shows neither.

    Attributes:
        url: base URL of the server (``http://127.0.0.1:8080``)
        api_key: the user's API token (legacy token or personal access token)
    """

    url: str
    api_key: str

    def __repr__(self) -> str:
        return "Connection(url=<hidden>, api_key=<hidden>)"

    @property
    def server_id(self) -> str:
        """A fingerprint of the server URL, stored instead of the URL itself."""
        return hashlib.sha256(self.url.rstrip("/").encode()).hexdigest()[:16]


def resolve_connection(
    url: str | None = None,
    api_key: str | None = None,
    secrets: Mapping[str, Any] | None = None,
) -> Connection:
    """The connection from arguments, FiftyOne plugin secrets, or the environment.

    Looks in this order: the arguments; ``secrets`` (an operator's
    ``ctx.secrets``) under ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``;
    the environment variables :data:`URL_VARIABLES` / :data:`KEY_VARIABLES`
    (the second names are the ones FiftyOne's own ``labelstudio`` backend
    reads).

    Raises:
        ConfigError: no URL or no key was found (the message names the
            variables to set, never a value)
    """
    secrets = secrets or {}

    def first(explicit: str | None, names: Sequence[str]) -> str | None:
        if explicit:
            return explicit
        for name in names:
            value = secrets.get(name) if hasattr(secrets, "get") else None
            if value:
                return str(value)
        for name in names:
            value = os.environ.get(name)
            if value:
                return value
        return None

    resolved_url = first(url, URL_VARIABLES)
    resolved_key = first(api_key, KEY_VARIABLES)
    missing = []
    if not resolved_url:
        missing.append(f"the server URL ({URL_VARIABLES[0]})")
    if not resolved_key:
        missing.append(f"the API key ({KEY_VARIABLES[0]})")
    if missing:
        raise ConfigError(
            "Label Studio is not configured: set " + " and ".join(missing)
            + " (environment variable or FiftyOne plugin secret)"
        )
    resolved_url = resolved_url.strip().rstrip("/")
    if not resolved_url.startswith(("http://", "https://")):
        raise ConfigError(f"{URL_VARIABLES[0]} must start with http:// or https://")
    return Connection(url=resolved_url, api_key=resolved_key.strip())


def _detail(body: Any) -> str:
    """The server's own words from an error body, short."""
    if isinstance(body, Mapping):
        parts = [body.get("detail"), body.get("validation_errors")]
        parts = [p if isinstance(p, str) else json.dumps(p, default=str) for p in parts if p]
        text = ": ".join(parts) or json.dumps(body, default=str)
    else:
        text = str(body or "")
    return text[:300]


class LabelStudioClient:
    """One authenticated session with a Label Studio server.

    Args:
        connection: URL and key (see :func:`resolve_connection`)
        timeout: seconds per request
    """

    def __init__(self, connection: Connection, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        from label_studio_sdk.client import LabelStudio

        self.connection = connection
        self.sdk = LabelStudio(base_url=connection.url, api_key=connection.api_key,
                               timeout=timeout)
        wrapper = self.sdk._client_wrapper
        self._http = wrapper.httpx_client.httpx_client
        self._headers = wrapper.get_headers()
        self._base = connection.url
        #: the ``Date`` header of the last answer (the server's clock)
        self.last_server_date: str | None = None

    def __repr__(self) -> str:
        return "LabelStudioClient(<hidden>)"

    def close(self) -> None:
        """Closes the HTTP session."""
        self._http.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- error translation ---------------------------------------------------

    def _translate(self, exc: BaseException, what: str, project_id: int | None = None) -> Exception:
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        if isinstance(exc, ApiError):
            status, body = exc.status_code, exc.body
        elif isinstance(exc, httpx.HTTPStatusError):
            status = exc.response.status_code
            try:
                body = exc.response.json()
            except ValueError:
                body = exc.response.text
        elif isinstance(exc, (httpx.TransportError, ConnectionError, OSError)):
            kind = type(exc).__name__
            return ServerUnavailableError(
                f"Label Studio server did not answer while {what} ({kind}); "
                "check that it is running and reachable (LABEL_STUDIO_URL)"
            )
        else:
            return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
        if status == 401:
            return AuthenticationError(
                f"Label Studio rejected the API key while {what} (HTTP 401): set a valid "
                "token in LABEL_STUDIO_API_KEY or the plugin secret"
            )
        if status == 403:
            return AuthenticationError(
                f"Label Studio refused access while {what} (HTTP 403): the API key's user "
                "may not use this project"
            )
        if status == 404 and project_id is not None:
            return ProjectNotFoundError(
                project_id,
                f"Label Studio project {project_id} does not exist on the server "
                "(deleted?) while " + what,
            )
        if status is not None and status >= 500:
            return ServerUnavailableError(
                f"Label Studio server failed while {what} (HTTP {status}): {_detail(body)}"
            )
        return LabelStudioError(f"Label Studio answered HTTP {status} while {what}: {_detail(body)}")

    def _call(self, what: str, fn, *args, project_id: int | None = None, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated, secrets removed
            translated = self._translate(exc, what, project_id)
            if translated is exc:
                raise
            raise translated from None

    def _request(self, method: str, path: str, what: str, *, project_id: int | None = None,
                 **kwargs) -> Any:
        def go():
            response = self._http.request(method, self._base + path, headers=self._headers,
                                          **kwargs)
            self.last_server_date = response.headers.get("date")
            response.raise_for_status()
            return response.json() if response.content else None
        return self._call(what, go, project_id=project_id)

    # -- endpoints -------------------------------------------------------------

    def check(self) -> None:
        """Checks that the server answers and accepts the key."""
        self._request("GET", "/api/projects", "checking the API key", params={"page_size": 1})

    def create_project(self, title: str, label_config: str, description: str = "") -> dict:
        """Creates a project; returns its JSON."""
        project = self._call("creating a project", self.sdk.projects.create, title=title,
                             label_config=label_config, description=description)
        return project.model_dump(mode="json")

    def get_project(self, project_id: int) -> dict:
        """The project's JSON (counts, label config, title)."""
        return self._request("GET", f"/api/projects/{int(project_id)}",
                             f"reading project {project_id}", project_id=project_id)

    def update_label_config(self, project_id: int, label_config: str) -> None:
        """Replaces a project's labeling configuration."""
        self._call(f"updating project {project_id}", self.sdk.projects.update,
                   id=int(project_id), label_config=label_config, project_id=project_id)

    def delete_project(self, project_id: int) -> None:
        """Deletes a project and its tasks."""
        self._call(f"deleting project {project_id}", self.sdk.projects.delete,
                   id=int(project_id), project_id=project_id)

    def upload_files(self, project_id: int, paths: Sequence[str | Path]) -> list[str]:
        """Uploads files without creating tasks; returns their ``/data/upload/...`` URLs.

        The URLs are in the order of ``paths`` (matched by upload id, which
        the server returns in the order of the multipart parts).
        """
        handles = []
        try:
            files = []
            for i, path in enumerate(paths):
                handle = open(path, "rb")  # noqa: SIM115 - closed below
                handles.append(handle)
                files.append((f"file{i}", (Path(path).name, handle, "application/octet-stream")))
            answer = self._request(
                "POST", f"/api/projects/{int(project_id)}/import",
                f"uploading media to project {project_id}", project_id=project_id,
                params={"commit_to_project": "false"}, files=files,
            )
        finally:
            for handle in handles:
                handle.close()
        ids = list(answer.get("file_upload_ids") or [])
        if len(ids) != len(paths):
            raise LabelStudioError(
                f"Label Studio stored {len(ids)} of {len(paths)} uploaded files in project "
                f"{project_id}"
            )
        uploads = self._request(
            "GET", f"/api/projects/{int(project_id)}/file-uploads",
            f"reading uploaded files of project {project_id}", project_id=project_id,
            params={"ids": json.dumps(ids)},
        )
        by_id = {item["id"]: item["file"] for item in uploads}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise LabelStudioError(f"Label Studio lost uploaded files {missing[:5]}")
        return ["/data/" + by_id[i].lstrip("/") for i in ids]

    def add_local_storage(self, project_id: int, path: str | Path, title: str) -> dict:
        """Adds a Local Files import storage (so ``/data/local-files/`` URLs open)."""
        storage = self._call(
            f"adding a local files storage to project {project_id}",
            self.sdk.import_storage.local.create, project=int(project_id), path=str(path),
            title=title, use_blob_urls=False, project_id=project_id,
        )
        return storage.model_dump(mode="json")

    def list_local_storages(self, project_id: int) -> list[dict]:
        """The project's Local Files import storages."""
        return self._request("GET", "/api/storages/localfiles",
                             f"reading storages of project {project_id}",
                             project_id=project_id, params={"project": int(project_id)})

    def import_tasks(self, project_id: int, tasks: Sequence[dict]) -> list[int]:
        """Creates tasks (with their predictions); returns the new task ids."""
        from label_studio_sdk.types import ImportApiRequest  # noqa: F401 - validates shape

        answer = self._call(
            f"importing tasks into project {project_id}", self.sdk.projects.import_tasks,
            id=int(project_id), request=list(tasks), return_task_ids=True,
            project_id=project_id,
        )
        return list(answer.task_ids or [])

    def users(self) -> dict[int, str]:
        """User id -> email (or username) of the organisation's users."""
        users = self._call("reading users", self.sdk.users.list)
        return {u.id: (u.email or u.username or f"user:{u.id}") for u in users}

    def count_tasks(self, project_id: int, *, query: dict | None = None) -> int:
        """How many tasks match (one cheap request)."""
        params: dict[str, Any] = {"project": int(project_id), "page_size": 1,
                                  "fields": "task_only"}
        if query:
            params["query"] = json.dumps(query)
        answer = self._request("GET", "/api/tasks", f"counting tasks of project {project_id}",
                               project_id=project_id, params=params)
        return int(answer.get("total") or 0)

    def iter_task_pages(
        self,
        project_id: int,
        *,
        fields: str = "all",
        query: dict | None = None,
        page_size: int = 100,
    ) -> Iterator[list[dict]]:
        """Pages of tasks as plain JSON dicts, in task id order.

        Args:
            project_id: the project
            fields: ``all`` (with annotations and predictions) or ``task_only``
            query: a Data Manager query (``{"filters": ...}``)
            page_size: tasks per request
        """
        params: dict[str, Any] = {"project": int(project_id), "fields": fields,
                                  "page_size": int(page_size)}
        if query:
            params["query"] = json.dumps(query)
        page, seen = 1, 0
        while True:
            answer = self._request(
                "GET", "/api/tasks", f"reading tasks of project {project_id}",
                project_id=project_id, params={**params, "page": page},
            )
            tasks = list(answer.get("tasks") or [])
            total = int(answer.get("total") or 0)
            if tasks:
                yield tasks
            seen += len(tasks)
            if not tasks or seen >= total:
                return
            page += 1

    def create_annotation(self, task_id: int, result: list[dict], **extra: Any) -> dict:
        """Creates an annotation on a task, as an annotator would (tests, scripts)."""
        annotation = self._call(f"annotating task {task_id}", self.sdk.annotations.create,
                                id=int(task_id), result=result, **extra)
        return annotation.model_dump(mode="json")
