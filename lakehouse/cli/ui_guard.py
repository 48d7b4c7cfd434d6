"""The Dagster webserver as ``lakehouse ui`` serves it: behind a Host/Origin guard.

The Dagster UI has no login, and binding it to 127.0.0.1 does not keep a web page out: any site
the user visits can make the browser send requests to ``http://127.0.0.1:3000`` (a cross-site
form POST, a WebSocket), or rebind its own DNS name to 127.0.0.1 and read the answers. So the
webserver's ASGI app is wrapped in :class:`OriginGuard`, which answers 403 to

- a ``Host`` whose name is not loopback (``127.0.0.1``, ``localhost``, ``[::1]``, or a name given
  with ``--allow-host``): DNS rebinding;
- an ``Origin`` other than the page's own (``http://`` + the ``Host`` header), ``Origin: null``
  included, on any request or WebSocket handshake: cross-site requests;
- a browser's cross-site or same-site request (``Sec-Fetch-Site``) that is not a plain
  navigation (following a link to the UI still works);
- a GraphQL mutation sent with GET (mutations go by POST, where the checks above apply).

Requests without ``Origin`` and ``Sec-Fetch-Site`` come from programs, not web pages, and pass:
anything that can run a program here can reach the port anyway. Without ``--read-only`` the guard
also starts ``dagster-daemon`` (as ``dagster dev`` does) so that runs launched from the UI run;
with it, the webserver refuses every mutation itself.

Run as ``python -m lakehouse.cli.ui_guard [--read-only] [--allow-host NAME]… -h HOST -p PORT``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


def host_name(value: str) -> str:
    """The name part of a Host header (``[::1]:3000`` → ``::1``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class OriginGuard:
    """ASGI middleware refusing DNS-rebinding and cross-origin requests (see the module doc)."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str] = ()):
        self.app = app
        self.hosts = {*LOOPBACK_NAMES, *(h.strip().lower() for h in allowed_hosts if h.strip())}

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket"):
            reason = self.refusal(scope)
            if reason is not None:
                await self._refuse(scope, receive, send, reason)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> str | None:
        """Why this request is refused, or None to let it through."""
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers") or []:
            name = raw_name.decode("latin-1").lower()
            if name in headers and name in ("host", "origin"):
                return f"duplicate {name} header"
            headers[name] = raw_value.decode("latin-1")
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:  # no Host at all gives "", which is not served
            return "the Host header names no address this UI serves (DNS rebinding?)"
        origin = headers.get("origin")
        if origin is not None and origin.strip().lower() != f"http://{host.strip().lower()}":
            return "cross-origin requests are not accepted"
        method = scope.get("method")  # None for a WebSocket handshake
        site = headers.get("sec-fetch-site", "").lower()
        navigation = method in ("GET", "HEAD") and headers.get("sec-fetch-mode") == "navigate"
        if site in ("cross-site", "same-site") and not navigation:
            return "cross-site requests are not accepted"
        if method in SAFE_METHODS:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if any("mutation" in text.lower() for text in query.get("query", [])):
                return "GraphQL mutations must be sent with POST"
        return None

    @staticmethod
    async def _refuse(scope: Scope, receive: Callable, send: Callable, reason: str) -> None:
        body = f"403 Forbidden: {reason}.\n".encode()
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            if "websocket.http.response" not in (scope.get("extensions") or {}):
                await send({"type": "websocket.close", "code": 1008})
                return
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lakehouse.cli.ui_guard", add_help=False)
    parser.add_argument("-h", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=3000)
    parser.add_argument("--read-only", action="store_true")
    parser.add_argument("--allow-host", action="append", default=[])
    parser.add_argument("--module", "-m", default="dagster_defs")
    return parser.parse_args(argv)


def webserver_argv(args: argparse.Namespace) -> list[str]:
    """The command line ``dagster-webserver`` is run with (in this process)."""
    read_only = ["--read-only"] if args.read_only else []
    return [
        "dagster-webserver",
        "-m",
        args.module,
        "-h",
        args.host,
        "-p",
        str(args.port),
        *read_only,
    ]


def daemon_argv(args: argparse.Namespace) -> list[str] | None:
    """The ``dagster-daemon`` command started beside the webserver, or None (read-only: no run
    can be launched, so none needs starting)."""
    if args.read_only:
        return None
    return [sys.executable, "-m", "dagster._daemon", "run", "-m", args.module]


def guarded(serve: Callable[..., Any], allowed_hosts: Iterable[str]) -> Callable[..., Any]:
    """``serve`` (``uvicorn.run``) serving its app behind an :class:`OriginGuard`."""

    def run(app: Any, **kwargs: Any) -> Any:
        # the guard is an ASGI 3 app; said outright, not guessed from its __call__'s signature
        return serve(OriginGuard(app, allowed_hosts=allowed_hosts), **kwargs, interface="asgi3")

    return run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import uvicorn

    uvicorn.run = guarded(uvicorn.run, args.allow_host)  # dagster_webserver.cli calls it
    command = daemon_argv(args)
    daemon = None if command is None else subprocess.Popen(command, env=dict(os.environ))
    from dagster_webserver import cli as webserver

    sys.argv = webserver_argv(args)
    try:
        webserver.main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        if daemon is not None:
            daemon.terminate()
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
