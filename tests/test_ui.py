"""`lakehouse ui` in a real browser: every table and subset asset is drawn with its upstream edges.

Starts the Dagster UI through the project's command (bound to 127.0.0.1), drives Debian's
headless Chromium with Playwright, triggers nothing, saves screenshots under test-artifacts/,
and stops every process it started (the whole process group, SIGKILL if SIGTERM is ignored).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dagster_defs.definitions import build_defs
from lakehouse.config import Config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)

GRAPH_JS = """
() => {
  const nodes = [...document.querySelectorAll('foreignObject')]
    .filter(f => f.querySelector('[class*="assetName"] [data-tooltip]'))
    .map(f => ({
      x: +f.getAttribute('x'), y: +f.getAttribute('y'),
      w: +f.getAttribute('width'), h: +f.getAttribute('height'),
      name: f.querySelector('[class*="assetName"] [data-tooltip]').getAttribute('data-tooltip')}));
  const edges = [...document.querySelectorAll('path[marker-end]')].map(p => p.getAttribute('d'));
  return {nodes, edges};
}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui") / "lakehouse"
    port = free_port()
    log = open(root.parent / "ui.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "lakehouse.cli", "ui", "--root", str(root), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                pytest.fail("the UI did not start: " + (root.parent / "ui.log").read_text()[-2000:])
            time.sleep(1)
        yield {"url": url, "root": root, "port": port, "process": process}
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # dagster dev can sit on SIGTERM
            process.wait(timeout=15)
        except ProcessLookupError:
            pass
        log.close()
        leftover = subprocess.run(
            ["pgrep", "-g", str(process.pid)], capture_output=True, text=True
        ).stdout.strip()
        assert leftover == "", f"processes left behind: {leftover}"


def test_the_ui_listens_on_loopback_only(ui):
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    listeners = [
        line.split()[3] for line in out.splitlines() if line.split()[3].endswith(f":{ui['port']}")
    ]
    assert listeners and all(addr.startswith("127.0.0.1:") for addr in listeners), listeners


def node_at(nodes, x, y, slack=25):
    hits = [
        n
        for n in nodes
        if n["x"] - slack <= x <= n["x"] + n["w"] + slack and n["y"] <= y <= n["y"] + n["h"]
    ]
    return min(hits, key=lambda n: n["w"] * n["h"])["name"] if hits else None


def drawn_edges(graph):
    """(source, target) asset names of the drawn edges, from their end points."""
    assets = graph["nodes"]
    edges = set()
    for d in graph["edges"]:
        numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
        (x1, y1), (x2, y2) = numbers[:2], numbers[-2:]
        edges.add((node_at(assets, x1, y1), node_at(assets, x2, y2)))
    return edges


def test_every_table_and_subset_asset_is_drawn_with_its_upstream_edges(ui):
    from playwright.sync_api import sync_playwright

    graph = build_defs(Config.load(root=ui["root"], env={})).resolve_asset_graph()
    parents = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    for name in (
        "videos",
        "clips",
        "annotations",
        "keyframes",
        "clip_embeddings",
        "text_embeddings",
        "third_person_dance",
        "egocentric_tool_use_over_30s",
    ):
        assert name in parents
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 1200})
            page.goto(f"{ui['url']}/asset-groups", wait_until="networkidle")
            page.wait_for_timeout(2000)
            page.screenshot(path=str(ARTIFACTS / "ui-asset-graph.png"))
            for name, ups in sorted(parents.items()):
                page.goto(
                    f"{ui['url']}/assets/{name}?view=lineage&lineageScope=upstream&lineageDepth=1",
                    wait_until="networkidle",
                )
                deadline = time.time() + 30
                while True:
                    found = page.evaluate(GRAPH_JS)
                    drawn = {n["name"] for n in (found or {}).get("nodes", [])}
                    if found and {name, *ups} <= drawn and len(found["edges"]) >= len(ups):
                        break
                    if time.time() > deadline:
                        page.screenshot(path=str(ARTIFACTS / f"ui-{name}-missing.png"))
                        pytest.fail(f"{name}: drawn {sorted(drawn)}, expected {sorted(ups)}")
                    page.wait_for_timeout(500)
                edges = drawn_edges(found)
                for parent in ups:
                    assert (parent, name) in edges, (name, parent, edges)
            page.goto(
                f"{ui['url']}/assets/third_person_dance?view=lineage", wait_until="networkidle"
            )
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ARTIFACTS / "ui-subset-lineage.png"))
        finally:
            browser.close()
