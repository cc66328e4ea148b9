"""A small Hub-compatible HTTP server on 127.0.0.1, for tests that push and pull with the real `huggingface_hub`.

It answers what `huggingface_hub` 2.4 calls for:

- `create_repo`: ``POST /api/repos/create`` (409 with the repo's ``url`` when it exists, which ``exist_ok`` accepts);
- `upload_folder` / `create_commit`: ``POST /api/models/{repo}/preupload/{rev}`` answers ``"regular"`` for every
  file (so the client never needs LFS or Xet) with the current blob ``oid`` of files already there (the client
  skips unchanged files and makes no empty commit), then ``POST /api/models/{repo}/commit/{rev}`` takes the
  NDJSON commit (a ``header`` line, then ``file`` (base64) / ``deletedFile`` / ``deletedFolder`` lines);
- `repo_info` / `resolve_revision`: ``GET /api/models/{repo}`` and ``GET /api/models/{repo}/revision/{rev}``;
- `list_repo_tree`: ``GET /api/models/{repo}/tree/{rev}[/{path}]``; `list_repo_commits`: ``.../commits/{rev}``;
- `hf_hub_download` / `snapshot_download`: ``HEAD`` and ``GET /{repo}/resolve/{rev}/{path}`` with ``ETag`` (the
  git blob oid), ``X-Repo-Commit`` and ``Content-Length``, ``Range`` on GET.

Repositories live in memory; a revision is ``main`` or a commit oid (or a prefix of one). Writes need an
``Authorization`` header, and a private repo answers 401 "not found" to requests without one, like the Hub.
``hub.fail(action, status, message)`` makes an action fail (``message`` may contain ``{authorization}``, to
check that a leaking server cannot make the client's token show up in our errors).

Tests take the fixture `hub` (registered for every test file by tests/conftest.py): the session's server, with
`huggingface_hub` pointed at it through `use_local_hub` for the test, and no failures queued.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

DATE = "2026-11-22T00:00:00.000Z"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1 (what `huggingface_hub` compares with the ``oid`` of the preupload answer)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    title: str
    description: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)

    def resolve(self, revision: str) -> Commit | None:
        if revision in ("main", "HEAD"):
            return self.commits[-1]
        if len(revision) >= 7:
            return next((c for c in self.commits if c.oid.startswith(revision)), None)
        return None


class LocalHub:
    """In-memory repositories, the request log and injected failures of one running server."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()
        self.requests: list[str] = []  # "METHOD /path" (never headers)
        self.authorizations: list[str] = []  # Authorization headers received, for tests of what the client sent
        self.failures: dict[str, tuple[int, str]] = {}
        self.endpoint = ""
        self._counter = itertools.count()

    def fail(self, action: str, status: int, message: str) -> None:
        """Answer every ``action`` request (``create``, ``preupload``, ``commit``, ``resolve``) with an error."""
        self.failures[action] = (status, message)

    def commits(self, repo_id: str) -> list[Commit]:
        return self.repos[repo_id].commits

    def new_commit(self, repo: Repo, title: str, description: str, files: dict[str, bytes]) -> Commit:
        digest = hashlib.sha1(f"{repo.repo_id}\n{next(self._counter)}\n{title}".encode())
        for name in sorted(files):
            digest.update(f"{name}:{git_blob_oid(files[name])}".encode())
        commit = Commit(digest.hexdigest(), title, description, files)
        repo.commits.append(commit)
        return commit


def _handler(hub: LocalHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        # -------------------------------------------------------------- helpers
        def _send(self, code: int, payload=None, headers: dict | None = None, body: bytes | None = None) -> None:
            headers = dict(headers or {})
            if body is None:
                body = json.dumps(payload if payload is not None else {}).encode()
                headers.setdefault("Content-Type", "application/json")
            self.send_response(code)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, code: int, message: str, error_code: str | None = None) -> None:
            headers = {"X-Error-Message": message}
            if error_code:
                headers["X-Error-Code"] = error_code
            self._send(code, {"error": message}, headers=headers)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _segments(self) -> tuple[list[str], dict]:
            # Split before unquoting: a quoted revision may contain "/" ("refs%2Fpr%2F1").
            url = urlsplit(self.path)
            hub.requests.append(f"{self.command} {url.path}")
            if self.headers.get("Authorization"):
                hub.authorizations.append(self.headers["Authorization"])
            return [unquote(s) for s in url.path.split("/")[1:]], parse_qs(url.query)

        def _injected(self, action: str) -> bool:
            if action not in hub.failures:
                return False
            status, message = hub.failures[action]
            self._body()
            self._error(status, message.format(authorization=self.headers.get("Authorization", "")))
            return True

        def _repo(self, repo_id: str, write: bool = False) -> Repo | None:
            repo = hub.repos.get(repo_id)
            authorized = bool(self.headers.get("Authorization"))
            if repo is None or (repo.private and not authorized):
                self._error(401 if not authorized else 404, f"Repository {repo_id} not found", "RepoNotFound")
                return None
            if write and not authorized:
                self._error(401, "Invalid credentials in Authorization header")
                return None
            return repo

        def _commit_at(self, repo: Repo, revision: str) -> Commit | None:
            commit = repo.resolve(revision)
            if commit is None:
                self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return commit

        # -------------------------------------------------------------- POST
        def do_POST(self):
            parts, query = self._segments()
            if parts == ["api", "repos", "create"]:
                if self._injected("create"):
                    return None
                return self._create_repo(json.loads(self._body()))
            if parts == ["api", "validate-yaml"]:  # card metadata check
                self._body()
                return self._send(200, {"errors": [], "warnings": []})
            if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit"):
                action = parts[4]
                if self._injected(action):
                    return None
                repo = self._repo(f"{parts[2]}/{parts[3]}", write=True)
                if repo is None:
                    self._body()
                    return None
                if "create_pr" in query:
                    self._body()
                    return self._error(400, "This test server does not support pull requests")
                commit = self._commit_at(repo, "/".join(parts[5:]))
                if commit is None:
                    self._body()
                    return None
                if action == "preupload":
                    files = json.loads(self._body())["files"]
                    return self._send(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                         "oid": git_blob_oid(commit.files[f["path"]]) if f["path"] in commit.files else None}
                        for f in files
                    ]})
                return self._commit(repo, commit, self._body())
            self._body()
            return self._error(404, f"No route for POST {'/'.join(parts)}")

        def _create_repo(self, spec: dict) -> None:
            if not self.headers.get("Authorization"):
                return self._error(401, "Invalid credentials in Authorization header")
            if spec.get("type", "model") != "model":
                return self._error(400, "This test server only hosts model repos")
            repo_id = f"{spec['organization']}/{spec['name']}" if spec.get("organization") else spec["name"]
            url = f"{hub.endpoint}/{repo_id}"
            with hub.lock:
                if repo_id in hub.repos:
                    return self._send(409, {"error": "You already created this model repo", "url": url})
                repo = hub.repos[repo_id] = Repo(repo_id, spec.get("visibility") == "private")
                hub.new_commit(repo, "initial commit", "", {".gitattributes": GITATTRIBUTES})
            return self._send(200, {"url": url, "name": repo_id})

        def _commit(self, repo: Repo, base: Commit, body: bytes) -> None:
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header":
                return self._error(400, "A commit starts with a header line")
            header = lines[0]["value"]
            with hub.lock:
                head = repo.commits[-1]
                if header.get("parentCommit") and header["parentCommit"] != head.oid:
                    return self._error(412, "A commit has happened since; pull the new parent commit")
                files = dict(base.files)
                for item in lines[1:]:
                    key, value = item["key"], item["value"]
                    if key == "file":
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif key == "deletedFile":
                        files.pop(value["path"], None)
                    elif key == "deletedFolder":
                        prefix = value["path"].rstrip("/") + "/"
                        files = {k: v for k, v in files.items() if not k.startswith(prefix)}
                    else:
                        return self._error(400, f"Unsupported commit operation {key!r} (every upload mode is 'regular')")
                commit = hub.new_commit(repo, header.get("summary", ""), header.get("description", ""), files)
            return self._send(200, {"commitUrl": f"{hub.endpoint}/{repo.repo_id}/commit/{commit.oid}",
                                    "commitOid": commit.oid, "pullRequestUrl": None})

        # -------------------------------------------------------------- GET / HEAD
        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            parts, query = self._segments()
            if len(parts) >= 4 and parts[:2] == ["api", "models"]:
                return self._api_get(f"{parts[2]}/{parts[3]}", parts[4:], query)
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            return self._error(404, f"No route for GET {'/'.join(parts)}")

        def _api_get(self, repo_id: str, rest: list[str], query: dict) -> None:
            repo = self._repo(repo_id)
            if repo is None:
                return None
            action = rest[0] if rest else "revision"
            commit = self._commit_at(repo, rest[1] if len(rest) > 1 else "main")
            if commit is None:
                return None
            if action == "revision":
                return self._send(200, {
                    "id": repo_id, "modelId": repo_id, "sha": commit.oid, "private": repo.private, "disabled": False,
                    "gated": False, "downloads": 0, "likes": 0, "tags": [], "lastModified": DATE, "createdAt": DATE,
                    "siblings": [{"rfilename": name} for name in sorted(commit.files)],
                })
            if action == "tree":
                prefix = "/".join(rest[2:]).strip("/")
                prefix = prefix + "/" if prefix else ""
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                entries, folders = [], set()
                for name, data in sorted(commit.files.items()):
                    if not name.startswith(prefix):
                        continue
                    head, sep, _ = name[len(prefix):].partition("/")
                    if sep and prefix + head not in folders:
                        folders.add(prefix + head)
                        entries.append({"type": "directory", "path": prefix + head, "oid": "0" * 40, "size": 0})
                    if recursive or not sep:
                        entries.append({"type": "file", "path": name, "size": len(data), "oid": git_blob_oid(data)})
                return self._send(200, entries)
            if action == "commits":
                history = repo.commits[: repo.commits.index(commit) + 1]
                return self._send(200, [
                    {"id": c.oid, "title": c.title, "message": c.description, "authors": [], "date": DATE}
                    for c in reversed(history)
                ])
            return self._error(404, f"No route for GET /api/models/{repo_id}/{action}")

        def _resolve(self, repo_id: str, revision: str, name: str) -> None:
            if self._injected("resolve"):
                return None
            repo = self._repo(repo_id)
            commit = self._commit_at(repo, revision) if repo is not None else None
            if commit is None:
                return None
            if name not in commit.files:
                return self._error(404, f"Entry {name} not found", "EntryNotFound")
            data = commit.files[name]
            headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_oid(data)}"',
                       "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
            byte_range = self.headers.get("Range", "")
            if self.command == "GET" and byte_range.startswith("bytes="):
                start, _, end = byte_range[len("bytes="):].partition("-")
                start, end = int(start or 0), int(end) if end else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return self._send(206, headers=headers, body=data[start : end + 1])
            return self._send(200, headers=headers, body=data)

    return Handler


@contextlib.contextmanager
def local_hub():
    """Run a server on a free loopback port; yields its `LocalHub` (``hub.endpoint`` is the URL); stops it after."""
    hub = LocalHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def hub_server():
    """One local Hub per test session (use unique repo ids per test)."""
    with local_hub() as hub:
        yield hub


@pytest.fixture
def hub(hub_server, monkeypatch):
    """The session's `LocalHub`, with `huggingface_hub` pointed at it for this test (use unique repo ids)."""
    use_local_hub(monkeypatch, hub_server.endpoint)
    hub_server.failures.clear()
    yield hub_server
    hub_server.failures.clear()


def use_local_hub(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Point `huggingface_hub` at ``endpoint`` and allow network calls to loopback only, until ``monkeypatch``
    undoes it.

    `huggingface_hub` reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` at import time into `constants`, and builds the
    download URL template and the trusted-host set from the endpoint, so those are patched too.
    """
    from huggingface_hub import constants

    if not endpoint.startswith("http://127.0.0.1:"):
        raise ValueError(f"Tests may only talk to a loopback server, got {endpoint}")
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # transformers keeps one `HfApi` (its endpoint fixed when first built) for its Hub calls: drop it, so the next
    # call builds one for this endpoint, and the patch's undo drops this one.
    from transformers.utils import hub as transformers_hub

    monkeypatch.setattr(transformers_hub, "_hf_api", None)
    _loopback_only(monkeypatch)


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the offline switch off, make sure nothing reaches past 127.0.0.1 (no DNS, no connection)."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and sock.family in (socket.AF_INET, socket.AF_INET6) and host not in _LOOPBACK:
            raise OSError(f"tests may only connect to 127.0.0.1, not {host}")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOOPBACK and host is not None:
            raise OSError(f"tests may only resolve 127.0.0.1, not {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


__all__ = ["LocalHub", "local_hub", "hub_server", "hub", "use_local_hub", "git_blob_oid"]
