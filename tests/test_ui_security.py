"""Scenario 11: the Dagster UI started by `lakehouse ui` refuses what a web page could make a
browser send it — DNS-rebinding Host headers, cross-origin POSTs and WebSockets, mutations by GET
— while its own pages keep working; `--read-only` refuses every mutation.

Each layer holds on its own: the guard in front of a UI whose Dagster accepts every mutation,
Dagster's read-only mode behind no guard, and the guard's rules on a fake ASGI app.

Real servers, real HTTP over sockets; every process a fixture starts is stopped (its whole
process group) and checked gone. (tests/test_ui.py drives the UI in a browser.)"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from lakehouse.cli import ui_guard
from lakehouse.cli.ui import ui_command
from lakehouse.cli.ui_guard import OriginGuard, host_name
from lakehouse.core.config import Config

slow = pytest.mark.slow  # the tests that start a server

EVIL = "http://evil.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(root, *extra: str):
    port = free_port()
    argv = [sys.executable, "-m", "lakehouse.cli", "ui", "--root", str(root), "--port", str(port)]
    return start_server(root, port, [*argv, *extra])


def start_server(root, port: int, argv: list[str], env: dict[str, str] | None = None):
    log = open(root.parent / f"ui-{port}.log", "w")  # noqa: SIM115 - closed in stop_ui
    process = subprocess.Popen(
        argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
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


# What `lakehouse ui --read-only` runs (ui_command → ui_guard.main → the webserver with
# --read-only), with OriginGuard replaced by the bare app: Dagster's read-only mode alone.
NO_GUARD = (
    "import sys\n"
    "from lakehouse.cli import ui_guard\n"
    "ui_guard.OriginGuard = lambda app, **_: app\n"
    "sys.exit(ui_guard.main(sys.argv[1:]))\n"
)


@pytest.fixture(scope="module")
def unguarded_read_only_ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-ro-unguarded") / "lakehouse"
    port = free_port()
    config = Config.load(root=root, env={})
    argv, env = ui_command(config, port=port, read_only=True)
    assert argv[1:3] == ["-m", "lakehouse.cli.ui_guard"] and "--read-only" in argv
    argv[1:3] = ["-c", NO_GUARD]
    process, log, port = start_server(root, port, argv, env)
    try:
        yield port, config.dagster_home_path
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


LAUNCH_RUN = """
mutation($location: String!, $repo: String!) {
  launchRun(executionParams: {selector: {repositoryLocationName: $location,
    repositoryName: $repo, jobName: "subsets"}}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
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


@slow
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


@slow
@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}", "0.0.0.0", ""]
)
def test_dns_rebinding_host_headers_are_refused(full_ui, host):
    status, text = request(full_ui, "GET", "/", headers={"Host": host.format(port=full_ui)})
    assert status in (400, 403), text
    status, _ = graphql(full_ui, "{ version }", Host=host.format(port=full_ui))
    assert status in (400, 403)


@slow
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


@slow
def test_following_a_link_to_the_ui_still_works(full_ui):
    headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert request(full_ui, "GET", "/runs", headers=headers)[0] == 200


@slow
def test_the_read_only_ui_refuses_mutations_even_from_its_own_origin(read_only_ui):
    selector = repository(read_only_ui)
    status, data = graphql(read_only_ui, ADD_PARTITION, {"key": "ro", **selector})
    assert status == 200
    assert data["data"]["addDynamicPartition"]["__typename"] == "UnauthorizedError"
    assert "ro" not in dynamic_partitions(read_only_ui)
    assert graphql(read_only_ui, ADD_PARTITION, {"key": "ro", **selector}, Origin=EVIL)[0] == 403


# -- each layer alone -------------------------------------------------------------------------


@slow
def test_the_guard_alone_refuses_a_cross_origin_launch_that_dagster_accepts(full_ui):
    """Behind the guard Dagster is not read-only: the launch a foreign page sends is refused by
    the guard alone, and the very same request from the UI's own origin launches a run."""
    selector = repository(full_ui)
    runs_before = run_count(full_ui)
    rebinding = f"evil.example:{full_ui}"
    for headers in (
        {"Origin": EVIL},
        {"Origin": "null"},  # a sandboxed frame, a redirect
        {"Origin": None, "Sec-Fetch-Site": "cross-site"},
        {"Host": rebinding, "Origin": f"http://{rebinding}"},  # DNS rebinding: same-origin to it
    ):
        status, text = graphql(full_ui, LAUNCH_RUN, selector, **headers)
        assert status == 403 and "403 Forbidden" in text, headers
    assert run_count(full_ui) == runs_before
    status, data = graphql(full_ui, LAUNCH_RUN, selector)  # the UI's own origin
    assert status == 200, data
    launched = data["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    assert run_count(full_ui) == runs_before + 1
    # the run is not needed: cancel it (another mutation only the UI's own origin may send)
    run_id = launched["run"]["runId"]
    terminate = "mutation($id: String!) { terminateRun(runId: $id) { __typename } }"
    assert graphql(full_ui, terminate, {"id": run_id}, Origin=EVIL)[0] == 403
    status, data = graphql(full_ui, terminate, {"id": run_id})
    assert status == 200 and data["data"]["terminateRun"]["__typename"], data
    wait_until_done(full_ui, run_id)  # no run worker left half-way at teardown


def wait_until_done(port, run_id: str, within_s: float = 120.0) -> str | None:
    """The run's final status, once it has one (None if it has none within ``within_s``)."""
    query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
    deadline = time.time() + within_s
    while time.time() < deadline:
        status, data = graphql(port, query, {"id": run_id})
        final = data["data"]["runOrError"].get("status") if status == 200 else None
        if final in ("SUCCESS", "FAILURE", "CANCELED"):
            return final
        time.sleep(1)
    return None


@slow
def test_dagster_read_only_mode_alone_refuses_what_the_guard_would_have_refused(
    unguarded_read_only_ui,
):
    """No guard in front (a rebinding Host and a foreign Origin get answers), but Dagster's
    read-only mode refuses the mutations itself, by POST and by GET, and no run is created."""
    from dagster import DagsterInstance

    port, home = unguarded_read_only_ui
    rebinding = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    status, data = graphql(port, "{ version }", **rebinding)
    assert status == 200 and data["data"]["version"]  # the guard would have answered 403
    selector = repository(port)
    for headers in (rebinding, {"Origin": EVIL}, {"Origin": "null"}, {}):
        status, data = graphql(port, LAUNCH_RUN, selector, **headers)
        assert status == 200, (headers, data)
        assert data["data"]["launchRun"]["__typename"] == "UnauthorizedError", headers
        status, data = graphql(port, ADD_PARTITION, {"key": "evil", **selector}, **headers)
        assert data["data"]["addDynamicPartition"]["__typename"] == "UnauthorizedError"
    variables = urllib.request.quote(json.dumps(selector))
    path = f"/graphql?query={urllib.request.quote(LAUNCH_RUN)}&variables={variables}"
    status, text = request(port, "GET", path, headers=rebinding)  # a mutation by GET
    assert status == 200 and json.loads(text)["data"]["launchRun"]["__typename"] == (
        "UnauthorizedError"
    )
    assert "evil" not in dynamic_partitions(port)
    assert run_count(port) == 0
    with DagsterInstance.from_config(str(home)) as instance:  # the instance the UI serves
        assert instance.get_runs_count() == 0


# -- the guard itself, without a server ------------------------------------------------------


class RecordingApp:
    """The app behind the guard: reads the request, answers 200 (or accepts the WebSocket) and
    records each call."""

    def __init__(self):
        self.calls: list[dict] = []

    async def __call__(self, scope, receive, send):
        self.calls.append(scope)
        message = await receive()
        if scope["type"] == "websocket":
            assert message == {"type": "websocket.connect"}
            await send({"type": "websocket.accept"})
            return
        assert message["type"] == "http.request"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


HOST = "the Host header names no address this UI serves (DNS rebinding?)"
ORIGIN = "cross-origin requests are not accepted"
SITE = "cross-site requests are not accepted"
BY_GET = "GraphQL mutations must be sent with POST"
PASSED = (True, 200, None)


def refusal_reason(sent: list[dict]) -> str:
    """The reason in a 403 answer, after checking the whole answer is well formed: a start
    with plain-text headers (and the right length for HTTP), then the body, and nothing more."""
    start, body = sent
    websocket = start["type"].startswith("websocket.")
    prefix = "websocket.http." if websocket else "http."
    assert start["type"] == prefix + "response.start" and body["type"] == prefix + "response.body"
    assert start["status"] == 403
    text = body["body"].decode()
    if websocket:
        assert start["headers"] == [(b"content-type", b"text/plain")]
    else:
        length = str(len(body["body"])).encode()
        assert start["headers"] == [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", length),
        ]
    assert text.startswith("403 Forbidden: ") and text.endswith(".\n"), text
    return text.removeprefix("403 Forbidden: ").removesuffix(".\n")


def through_guard(
    headers: dict[str, str] | list[tuple[str, str]],
    *,
    method: str = "POST",
    kind: str = "http",
    query: str = "",
    allowed_hosts: tuple[str, ...] = (),
    extensions: dict | None = None,
) -> tuple[bool, object, str | None]:
    """Send one request (or WebSocket handshake) through OriginGuard to a RecordingApp:
    whether the app was called, the status answered (``101`` for an accepted WebSocket,
    ``"close"`` for one closed with 1008), and the reason given with a 403 (else None)."""
    app = RecordingApp()
    guard = OriginGuard(app, allowed_hosts=allowed_hosts)
    pairs = headers.items() if isinstance(headers, dict) else headers
    scope = {
        "type": kind,
        "path": "/graphql",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in pairs],
        "extensions": extensions or {},
    }
    if kind == "http":
        scope["method"] = method
    sent: list[dict] = []
    received: list[dict] = []

    async def receive():
        message = (
            {"type": "websocket.connect"}
            if kind == "websocket"
            else {"type": "http.request", "body": b"", "more_body": False}
        )
        received.append(message)
        return message

    async def send(message):
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    called = bool(app.calls)
    assert len(received) == (1 if called or kind == "websocket" else 0)
    if called:
        assert app.calls == [scope]
        answer = {"http.response.start": 200, "websocket.accept": 101}[sent[0]["type"]]
        return True, answer, None
    if sent == [{"type": "websocket.close", "code": 1008}]:
        return False, "close", None
    return False, 403, refusal_reason(sent)


OWN = {"Host": "127.0.0.1:3000", "Origin": "http://127.0.0.1:3000"}


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:3000", "127.0.0.1.evil.example:3000", "0.0.0.0:3000", "devbox"],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_guard_refuses_a_host_it_does_not_serve(host, method):
    assert through_guard({"Host": host}, method=method) == (False, 403, HOST)
    own_origin = {"Host": host, "Origin": f"http://{host}"}
    assert through_guard(own_origin, method=method) == (False, 403, HOST)
    assert through_guard({}, method=method) == (False, 403, HOST)  # no Host at all
    assert through_guard({"Host": ""}, method=method) == (False, 403, HOST)


@pytest.mark.parametrize("host", ["127.0.0.1:3000", "localhost:8080", "[::1]:3000", "LOCALHOST"])
def test_the_guard_passes_loopback_hosts_and_the_allowed_ones(host):
    assert through_guard({"Host": host}, method="GET") == PASSED
    assert through_guard({"Host": host, "Origin": f"http://{host}"}) == PASSED
    assert through_guard({"Host": "devbox:3000"}, allowed_hosts=("devbox",)) == PASSED
    assert through_guard({"Host": "DevBox"}, allowed_hosts=(" DEVBOX ", " ")) == PASSED
    assert through_guard({"Host": "xxxx"}, allowed_hosts=("devbox",)) == (False, 403, HOST)


@pytest.mark.parametrize(
    "origin",
    [EVIL, "null", "http://localhost:3001", "https://127.0.0.1:3000", "http://127.0.0.1:3000.evil"],
)
def test_the_guard_refuses_a_post_from_another_origin(origin):
    assert through_guard({**OWN, "Origin": origin}) == (False, 403, ORIGIN)
    assert through_guard(OWN) == PASSED  # its own origin
    assert through_guard({"Host": OWN["Host"]}) == PASSED  # a program: no Origin
    assert through_guard({"Host": "LocalHost:3000", "Origin": " http://localhost:3000"}) == PASSED


def test_the_guard_refuses_a_second_host_or_origin_header():
    """Which of two headers a server reads is its own choice: the guard answers neither."""
    duplicate = "duplicate {} header"
    second_host = [*OWN.items(), ("Host", "evil.example")]
    assert through_guard(second_host) == (False, 403, duplicate.format("host"))
    second_origin = [*OWN.items(), ("Origin", EVIL)]
    assert through_guard(second_origin) == (False, 403, duplicate.format("origin"))
    two_sites = [*OWN.items(), ("Sec-Fetch-Site", "same-origin"), ("Sec-Fetch-Site", "none")]
    assert through_guard(two_sites) == PASSED  # other headers may repeat


@pytest.mark.parametrize("site", ["cross-site", "same-site", "Cross-Site"])
def test_the_guard_refuses_a_cross_site_post_without_origin(site):
    assert through_guard({"Host": OWN["Host"], "Sec-Fetch-Site": site}) == (False, 403, SITE)
    navigate = {"Host": OWN["Host"], "Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate"}
    assert through_guard(navigate, method="GET") == PASSED  # following a link
    assert through_guard(navigate, method="HEAD") == PASSED
    assert through_guard(navigate) == (False, 403, SITE)  # a form POST is no navigation
    assert through_guard(navigate, kind="websocket") == (False, "close", None)
    assert through_guard({**OWN, "Sec-Fetch-Site": "same-origin"}) == PASSED
    assert through_guard({**OWN, "Sec-Fetch-Site": "none"}) == PASSED  # typed in the address bar


@pytest.mark.parametrize("origin", [EVIL, "null", "http://localhost:3001"])
def test_the_guard_refuses_a_websocket_from_another_origin(origin):
    headers = {**OWN, "Origin": origin}
    assert through_guard(headers, kind="websocket") == (False, "close", None)
    can_answer = {"websocket.http.response": {}}  # the server can send a 403 for the handshake
    assert through_guard(headers, kind="websocket", extensions=can_answer) == (False, 403, ORIGIN)
    rebinding = {"Host": "evil.example:3000", "Origin": "http://evil.example:3000"}
    assert through_guard(rebinding, kind="websocket") == (False, "close", None)
    assert through_guard(rebinding, kind="websocket", extensions=can_answer) == (
        False,
        403,
        HOST,
    )
    assert through_guard(OWN, kind="websocket") == (True, 101, None)
    assert through_guard(OWN, kind="websocket", query="query=mutation") == (True, 101, None)


@pytest.mark.parametrize(
    "text", ["mutation { launchRun }", "  MUTATION m { wipeAssets }", "{ a } mutation b { c }"]
)
def test_the_guard_refuses_a_mutation_sent_by_get(text):
    query = urllib.parse.urlencode({"query": text})
    assert through_guard(OWN, method="GET", query=query) == (False, 403, BY_GET)
    assert through_guard({"Host": OWN["Host"]}, method="HEAD", query=query) == (False, 403, BY_GET)
    assert through_guard(OWN, method="OPTIONS", query=query) == (False, 403, BY_GET)
    second = urllib.parse.urlencode([("query", "{ version }"), ("query", text)])
    assert through_guard(OWN, method="GET", query=second) == (False, 403, BY_GET)
    assert through_guard(OWN, method="GET", query="query=%7B+version+%7D") == PASSED
    assert through_guard(OWN, method="GET", query="query=muta&query=tion") == PASSED
    assert through_guard(OWN, query=query) == PASSED  # by POST: the Origin rules apply


def test_other_traffic_passes_the_guard_untouched():
    """ASGI lifespan events are no requests: the guard hands them on as they are."""
    scope = {"type": "lifespan"}
    calls: list = []

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        raise AssertionError(message)

    async def app(scope, receive, send):
        calls.append((scope, await receive()))

    asyncio.run(OriginGuard(app)(scope, receive, send))
    assert calls == [(scope, {"type": "lifespan.startup"})]


def test_host_names_are_parsed_strictly():
    assert host_name("127.0.0.1:3000") == "127.0.0.1"
    assert host_name("[::1]:3000") == "::1"
    assert host_name("[::1]") == "::1"
    assert host_name(" LOCALHOST ") == "localhost"
    assert host_name("localhost.evil.example:3000") == "localhost.evil.example"
    assert host_name("[::1]:3000]") == "::1"  # the first closing bracket ends the address
    assert host_name("[::1") == "[::1"  # no closing bracket: not an address it takes apart
    assert host_name("::1") == "::1"  # more than one colon: no port to cut off
    assert host_name("") == ""
    guard = OriginGuard(None, allowed_hosts=["devbox"])
    scope = {"type": "http", "method": "POST", "headers": [(b"host", b"devbox:3000")]}
    assert guard.refusal(scope) is None
    scope["headers"].append((b"host", b"evil.example"))
    assert guard.refusal(scope) == "duplicate host header"


def test_the_guard_command_line_runs_the_webserver_and_the_daemon_it_needs():
    """What ``python -m lakehouse.cli.ui_guard`` runs (the server tests above run it for real)."""
    args = ui_guard.parse_args([])
    assert ui_guard.webserver_argv(args) == [
        "dagster-webserver", "-m", "dagster_defs", "-h", "127.0.0.1", "-p", "3000",
    ]  # fmt: skip
    assert ui_guard.daemon_argv(args) == [
        sys.executable, "-m", "dagster._daemon", "run", "-m", "dagster_defs",
    ]  # fmt: skip
    argv = ["--read-only", "-h", "::1", "-p", "4001", "-m", "defs", "--allow-host", "a"]
    args = ui_guard.parse_args([*argv, "--allow-host", "b"])
    assert args.allow_host == ["a", "b"]
    assert ui_guard.webserver_argv(args) == [
        "dagster-webserver", "-m", "defs", "-h", "::1", "-p", "4001", "--read-only",
    ]  # fmt: skip
    assert ui_guard.daemon_argv(args) is None  # read-only: no run to start
    long_names = ["--host", "::1", "--port", "4001", "--module", "defs", "--read-only"]
    assert vars(ui_guard.parse_args(long_names)) == {**vars(args), "allow_host": []}


def test_the_webserver_is_served_behind_the_guard():
    served: list = []

    def serve(app, **kwargs):
        served.append((app, kwargs))
        return "served"

    app = RecordingApp()
    assert ui_guard.guarded(serve, ["devbox"])(app, host="127.0.0.1", port=3000) == "served"
    [(guard, kwargs)] = served
    assert kwargs == {"host": "127.0.0.1", "port": 3000, "interface": "asgi3"}
    assert isinstance(guard, OriginGuard) and guard.app is app
    assert guard.hosts == {"127.0.0.1", "localhost", "::1", "devbox"}
