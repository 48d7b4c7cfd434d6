"""``lakehouse ui``: the Dagster UI for this project's definitions and one lakehouse root.

The UI binds 127.0.0.1 only. Anyone who can reach its port can launch runs (materialize, wipe
assets' history) without logging in: do not expose it on a shared network; tunnel to it (e.g.
``ssh -L 3000:127.0.0.1:3000 host``) and use ``--read-only`` where you only need to look.
Web pages the user visits are kept out by :mod:`lakehouse.cli.ui_guard`, which serves the webserver
behind a Host/Origin check (DNS rebinding, cross-site requests and WebSockets are refused).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.core.errors import InputError

if TYPE_CHECKING:
    from lakehouse.core.config import Config

HOST = "127.0.0.1"


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name  # the same virtual environment first
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise InputError(f"{name} is not installed here; install the project with `make demo`.")
    return found


def ui_command(
    config: Config,
    *,
    port: int,
    read_only: bool,
    config_file: str | None = None,
    allow_hosts: tuple[str, ...] = (),
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that serve the UI for ``config``'s lakehouse."""
    if not 1 <= port <= 65535:
        raise InputError(f"Port {port} is not a TCP port; pass --port 1..65535.")
    home = config.dagster_home_path
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text("telemetry:\n  enabled: false\n")
    env = dict(os.environ)
    env.update({"LAKEHOUSE_ROOT": config.root, "DAGSTER_HOME": str(home)})
    if config_file:
        env["LAKEHOUSE_CONFIG"] = os.path.abspath(config_file)
    _tool("dagster-webserver")  # a clear error when the UI is not installed
    argv = [sys.executable, "-m", "lakehouse.cli.ui_guard", "-m", "dagster_defs"]
    argv += ["-h", HOST, "-p", str(port), *(["--read-only"] if read_only else [])]
    for name in allow_hosts:
        argv += ["--allow-host", name]
    return argv, env


def run_ui(
    config: Config,
    *,
    port: int = 3000,
    read_only: bool = False,
    config_file: str | None = None,
    allow_hosts: tuple[str, ...] = (),
    echo: object = print,
) -> int:
    """Serve the UI until interrupted; returns the server's exit status."""
    argv, env = ui_command(
        config, port=port, read_only=read_only, config_file=config_file, allow_hosts=allow_hosts
    )
    mode = "read-only" if read_only else "full (runs can be launched)"
    echo(f"Dagster UI for {config.root}: http://{HOST}:{port}  [{mode}]  (Ctrl-C stops it)")
    process = subprocess.Popen(argv, env=env, start_new_session=True)
    # The server runs in its own session (so that stop() reaches every process Dagster starts);
    # a SIGTERM or SIGHUP to this process must stop it too, or it would outlive us.
    previous = {}

    def _terminate(signum: int, frame: object) -> None:
        raise _Stopped(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[signum] = signal.signal(signum, _terminate)
        except ValueError:  # not the main thread: leave the handlers alone
            pass
    try:
        return process.wait()
    except KeyboardInterrupt:
        stop(process)
        return 130
    except _Stopped as exc:
        stop(process)
        return 128 + exc.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Stopped(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def stop(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a server started in its own session: SIGTERM to the group, then SIGKILL."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        process.wait()
