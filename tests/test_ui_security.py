"""Scenario 11: the Dagster UI started by `lakehouse ui` refuses what a web page could make a
browser send it — DNS-rebinding Host headers, cross-origin POSTs and WebSockets, mutations by GET
— while its own pages keep working; `--read-only` refuses every mutation.

Real servers, real HTTP over sockets; every process a fixture starts is stopped (its whole
process group) and checked gone. (tests/test_ui.py drives the UI in a browser.)"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from lakehouse.cli.ui_guard import OriginGuard, host_name

pytestmark = pytest.mark.slow

EVIL = "http://evil.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(root, *extra: str):
    port = free_port()
    log = open(root.parent / f"ui-{port}.log", "w")  # noqa: SIM115 - closed in stop_ui
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lakehouse.cli",
            "ui",
            "--root",
            str(root),
            "--port",
            str(port),
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            stop_ui(process, log, port)
            pytest.fail("the UI did not start: " + (root.parent / f"ui-{port}.log").read_text())
        time.sleep(1)
    return process, log, port


def stop_ui(process: subprocess.Popen, log, port: int | None = None) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass
    for _ in range(20):  # children that outlived the SIGTERM
        left = subprocess.run(
            ["pgrep", "-g", str(process.pid)], capture_output=True, text=True
        ).stdout.split()
        if not left:
            break
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.5)
    log.close()
    assert not left, f"processes left behind: {left}"
    if port is not None:
        assert port_closes(port), "the UI server outlived `lakehouse ui`"


def port_closes(port: int, within_s: float = 20.0) -> bool:
    """True once nothing listens on ``port`` any more: the server that `lakehouse ui` started in
    its own session is gone too, not only the processes of the test's group."""
    deadline = time.time() + within_s
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True
        time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def full_ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-full") / "lakehouse"
    process, log, port = start_ui(root)
    try:
        yield port
    finally:
        stop_ui(process, log, port)


@pytest.fixture(scope="module")
def read_only_ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-ro") / "lakehouse"
    process, log, port = start_ui(root, "--read-only")
    try:
        yield port
    finally:
        stop_ui(process, log, port)


def request(port, method, path, *, body=None, headers=None):
    """One HTTP request with exactly the headers given (Host included)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        all_headers = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        all_headers = {k: v for k, v in all_headers.items() if v is not None}
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def graphql(port, query, variables=None, **headers):
    headers = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}", **headers}
    status, text = request(
        port,
        "POST",
        "/graphql",
        body={"query": query, "variables": variables or {}},
        headers=headers,
    )
    return status, (json.loads(text) if status == 200 else text)


ADD_PARTITION = """
mutation($key: String!, $location: String!, $repo: String!) {
  addDynamicPartition(partitionsDefName: "sources", partitionKey: $key,
    repositorySelector: {repositoryLocationName: $location, repositoryName: $repo}) {
    __typename
  }
}"""


def repository(port):
    nodes = "nodes { name location { name } }"
    status, data = graphql(
        port, f"{{ repositoriesOrError {{ ... on RepositoryConnection {{ {nodes} }} }} }}"
    )
    assert status == 200, data
    node = data["data"]["repositoriesOrError"]["nodes"][0]
    return {"location": node["location"]["name"], "repo": node["name"]}


def dynamic_partitions(port) -> set[str]:
    # a dynamic partition added shows up among the job's partition keys
    query = """
    query($location: String!, $repo: String!) {
      pipelineOrError(params: {repositoryLocationName: $location, repositoryName: $repo,
                               pipelineName: "ingest"}) {
        ... on Pipeline { partitionKeysOrError { ... on PartitionKeys { partitionKeys } } }
      }
    }"""
    status, data = graphql(port, query, repository(port))
    assert status == 200, data
    keys = data["data"]["pipelineOrError"]["partitionKeysOrError"]
    return set(keys.get("partitionKeys") or [])


def run_count(port) -> int:
    status, data = graphql(port, "{ runsOrError { ... on Runs { count } } }")
    assert status == 200, data
    return data["data"]["runsOrError"]["count"]


def websocket_status(port, **headers) -> str:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /graphql HTTP/1.1",
        f"Host: {headers.pop('Host', f'127.0.0.1:{port}')}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: graphql-ws",
        *[f"{k}: {v}" for k, v in headers.items()],
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return s.recv(200).decode("latin-1").split("\r\n")[0]


# -- the guard in front of the full UI -------------------------------------------------------


def test_the_ui_answers_its_own_pages(full_ui):
    status, page = request(full_ui, "GET", "/")
    assert status == 200 and "<html" in page.lower()
    for host in (f"localhost:{full_ui}", f"[::1]:{full_ui}", "localhost:8080"):  # 8080: a tunnel
        assert request(full_ui, "GET", "/server_info", headers={"Host": host})[0] == 200
    status, data = graphql(full_ui, "{ version }")
    assert status == 200 and data["data"]["version"]
    assert websocket_status(full_ui, Origin=f"http://127.0.0.1:{full_ui}").endswith(
        "101 Switching Protocols"
    )


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}", "0.0.0.0", ""]
)
def test_dns_rebinding_host_headers_are_refused(full_ui, host):
    status, text = request(full_ui, "GET", "/", headers={"Host": host.format(port=full_ui)})
    assert status in (400, 403), text
    status, _ = graphql(full_ui, "{ version }", Host=host.format(port=full_ui))
    assert status in (400, 403)


def test_cross_origin_mutations_and_launches_are_refused(full_ui):
    selector = repository(full_ui)
    runs_before = run_count(full_ui)
    for headers in (
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Origin": f"http://localhost:{full_ui + 1}"},  # another local web app
        {"Origin": f"https://127.0.0.1:{full_ui}"},
        {"Origin": f"{EVIL}", "Content-Type": "text/plain"},  # a form needs no preflight
    ):
        status, _ = graphql(full_ui, ADD_PARTITION, {"key": "evil", **selector}, **headers)
        assert status == 403, headers
    # a form POST from another site: no Origin (old browser) but Sec-Fetch-Site says it
    status, _ = graphql(
        full_ui,
        ADD_PARTITION,
        {"key": "evil", **selector},
        Origin=None,
        **{"Sec-Fetch-Site": "cross-site"},
    )
    assert status == 403
    target = (
        f'repositoryLocationName: "{selector["location"]}", repositoryName: "{selector["repo"]}"'
    )
    launch = (
        f'mutation {{ launchRun(executionParams: {{selector: {{{target}, jobName: "subsets"}}, '
        'mode: "default"}) { __typename } }'
    )
    assert graphql(full_ui, launch, Origin=EVIL)[0] == 403
    query = urllib.request.quote(launch)
    assert request(full_ui, "GET", f"/graphql?query={query}")[0] == 403  # mutation by GET
    assert websocket_status(full_ui, Origin=EVIL).split()[1] == "403"
    assert websocket_status(full_ui, Host="evil.example").split()[1] == "403"
    assert "evil" not in dynamic_partitions(full_ui)
    assert run_count(full_ui) == runs_before
    # the same mutation from the UI's own origin goes through: the full UI can change things
    status, data = graphql(full_ui, ADD_PARTITION, {"key": "mine", **selector})
    assert status == 200, data
    assert "mine" in dynamic_partitions(full_ui)


def test_following_a_link_to_the_ui_still_works(full_ui):
    headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert request(full_ui, "GET", "/runs", headers=headers)[0] == 200


def test_the_read_only_ui_refuses_mutations_even_from_its_own_origin(read_only_ui):
    selector = repository(read_only_ui)
    status, data = graphql(read_only_ui, ADD_PARTITION, {"key": "ro", **selector})
    assert status == 200
    assert data["data"]["addDynamicPartition"]["__typename"] == "UnauthorizedError"
    assert "ro" not in dynamic_partitions(read_only_ui)
    assert graphql(read_only_ui, ADD_PARTITION, {"key": "ro", **selector}, Origin=EVIL)[0] == 403


# -- the guard itself, without a server ------------------------------------------------------


def test_host_names_are_parsed_strictly():
    assert host_name("127.0.0.1:3000") == "127.0.0.1"
    assert host_name("[::1]:3000") == "::1"
    assert host_name("LOCALHOST") == "localhost"
    assert host_name("localhost.evil.example:3000") == "localhost.evil.example"
    guard = OriginGuard(None, allowed_hosts=["devbox"])
    scope = {"type": "http", "method": "POST", "headers": [(b"host", b"devbox:3000")]}
    assert guard.refusal(scope) is None
    scope["headers"].append((b"host", b"evil.example"))
    assert "duplicate" in guard.refusal(scope)
