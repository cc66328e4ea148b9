"""A small Hub-compatible HTTP server on 127.0.0.1 for upload/download tests with the real huggingface_hub client.

It implements what ``create_repo``, ``upload_folder`` (preupload -> every file "regular" -> NDJSON commit),
``repo_info``, ``list_repo_tree``, ``list_repo_commits`` and ``hf_hub_download``/``snapshot_download`` (HEAD and
GET on ``/{repo}/resolve/{revision}/{path}``) call, keeping repositories in memory. Only loopback is used.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class _Repo:
    def __init__(self):
        self.commits: list[dict] = []  # each {"oid", "title", "files": {path: bytes}}

    def head(self, revision: str) -> dict | None:
        if not self.commits:
            return None
        if revision in ("main", "HEAD"):
            return self.commits[-1]
        return next((c for c in self.commits if c["oid"] == revision), None)


class HubState:
    def __init__(self):
        self.repos: dict[str, _Repo] = {}
        self.lock = threading.Lock()
        self.requests: list[str] = []


def _handler(state: HubState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        # -------------------------------------------------------------- helpers
        def _send(self, code: int, payload=None, headers: dict | None = None, body: bytes | None = None):
            if body is None:
                body = json.dumps(payload if payload is not None else {}).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _not_found(self, what: str):
            self._send(404, {"error": f"{what} not found"}, headers={"X-Error-Code": "RepoNotFound"})

        # -------------------------------------------------------------- routes
        def do_POST(self):
            path = unquote(urlsplit(self.path).path)
            state.requests.append(f"POST {path}")
            if path == "/api/repos/create":
                spec = json.loads(self._body())
                repo_id = f"{spec['organization']}/{spec['name']}" if spec.get("organization") else spec["name"]
                with state.lock:
                    state.repos.setdefault(repo_id, _Repo())
                return self._send(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})
            if path == "/api/validate-yaml":  # model-card metadata check made before committing a README.md
                self._body()
                return self._send(200, {"errors": [], "warnings": []})
            parts = path.split("/")
            if len(parts) >= 7 and parts[1] == "api" and parts[2] == "models" and parts[5] in ("preupload", "commit"):
                repo_id, action = f"{parts[3]}/{parts[4]}", parts[5]
                if repo_id not in state.repos:
                    return self._not_found(repo_id)
                body = self._body()
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
                return self._commit(repo_id, body)
            self._send(404, {"error": f"no route for POST {path}"})

        def _commit(self, repo_id: str, body: bytes):
            repo = state.repos[repo_id]
            with state.lock:
                previous = repo.head("main")
                files = dict(previous["files"]) if previous else {}
                title = ""
                for line in body.decode().splitlines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if item["key"] == "header":
                        title = item["value"]["summary"]
                    elif item["key"] == "file":
                        files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    elif item["key"] == "deletedFile":
                        files.pop(item["value"]["path"], None)
                    else:
                        return self._send(400, {"error": f"unsupported commit operation {item['key']}"})
                oid = hashlib.sha1(f"{repo_id}{len(repo.commits)}{time.time()}".encode()).hexdigest()
                repo.commits.append({"oid": oid, "title": title, "files": files})
            host = self.headers["Host"]
            return self._send(200, {"commitUrl": f"http://{host}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None})

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            url = urlsplit(self.path)
            path = unquote(url.path)
            state.requests.append(f"{self.command} {path}")
            parts = path.split("/")
            if len(parts) >= 6 and parts[1] == "api" and parts[2] == "models":
                repo_id, action, revision = f"{parts[3]}/{parts[4]}", parts[5], "/".join(parts[6:]) or "main"
                repo = state.repos.get(repo_id)
                commit = repo.head(revision) if repo else None
                if commit is None:
                    return self._not_found(f"{repo_id}@{revision}")
                if action == "revision":
                    return self._send(200, {
                        "id": repo_id, "modelId": repo_id, "sha": commit["oid"], "private": False, "disabled": False,
                        "downloads": 0, "likes": 0, "tags": [], "lastModified": "2026-11-22T00:00:00.000Z",
                        "siblings": [{"rfilename": name} for name in sorted(commit["files"])],
                    })
                if action == "tree":
                    return self._send(200, [
                        {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for name, data in sorted(commit["files"].items())
                    ])
                if action == "commits":
                    return self._send(200, [
                        {"id": c["oid"], "title": c["title"], "message": "", "authors": [], "date": "2026-11-22T00:00:00.000Z"}
                        for c in reversed(repo.commits)
                    ])
            if len(parts) >= 6 and parts[3] == "resolve":
                repo_id, revision, name = f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:])
                repo = state.repos.get(repo_id)
                commit = repo.head(revision) if repo else None
                if commit is None:
                    return self._not_found(f"{repo_id}@{revision}")
                if name not in commit["files"]:
                    return self._send(404, {"error": "entry not found"}, headers={"X-Error-Code": "EntryNotFound"})
                data = commit["files"][name]
                headers = {"X-Repo-Commit": commit["oid"], "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                           "Content-Type": "application/octet-stream"}
                return self._send(200, headers=headers, body=data)
            self._send(404, {"error": f"no route for GET {path}"})

    return Handler


@contextlib.contextmanager
def local_hub():
    """Run the server on a free loopback port; yields ``(endpoint, state)``; stops it afterwards."""
    state = HubState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
