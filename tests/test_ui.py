"""`lakehouse ui` in a real browser: every table and subset asset is drawn with its upstream edges,
and materializations show row counts, table versions, a preview table and pictures.

Ingests a few generated videos and materializes a subset through Dagster (in-process, before the
UI starts), starts the Dagster UI through the project's command (bound to 127.0.0.1), drives
Debian's headless Chromium with Playwright, triggers nothing from the UI, saves screenshots under
test-artifacts/, and stops every process it started (the whole process group, SIGKILL if SIGTERM
is ignored).
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
from PIL import Image

from dagster_defs.definitions import build_defs
from dagster_defs.runner import run_ingest, run_subset
from lakehouse.api import Lakehouse
from lakehouse.core.config import Config
from lakehouse.ingest.sources import register_source

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(autouse=True)
def _chromium() -> None:
    """Skip without Debian's chromium, except where the run says the UI tests must run (CI sets
    LAKEHOUSE_REQUIRE_UI=1 after installing it, so a lost browser fails instead of hiding)."""
    if CHROMIUM is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("LAKEHOUSE_REQUIRE_UI") == "1":
            pytest.fail(f"{message}, and LAKEHOUSE_REQUIRE_UI=1 says the UI tests must run")
        pytest.skip(message)


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


def materialize_a_source(root: Path, videos: dict[str, Path]) -> None:
    """Two generated videos (one annotated as a dance) ingested through Dagster, and the
    third_person_dance subset materialized, so the UI has materializations to show."""
    folder = root.parent / "videos"
    folder.mkdir()
    shutil.copy(videos["cuts"], folder / "three_scenes.mp4")
    shutil.copy(videos["exo"], folder / "dance.mp4")
    (folder / "labels.csv").write_text(
        "video,start,end,caption,view\ndance.mp4,00:00:00.50,00:00:03.50,a dancer spins,exo\n"
    )
    config = Config.load(root=root, env={})
    register_source(Lakehouse(config), folder, name="cam-a", annotations=[folder / "labels.csv"])
    run_ingest(config, "cam-a")
    run_subset(config, "third_person_dance")


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
def ui(tmp_path_factory, synthetic_videos):
    root = tmp_path_factory.mktemp("ui") / "lakehouse"
    materialize_a_source(root, synthetic_videos)
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
        assert port_closes(port), "the UI server outlived `lakehouse ui`"


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


SLATEBLUE = (106, 90, 205)  # the bars of lakehouse.render.plots.bar_chart_svg


def dismiss_dialogs(page, wait_ms: int = 0) -> None:
    """Dagster greets a new browser profile with a newsletter dialog; skip it. It can open a
    moment after the page settled, dimming everything under it: ``wait_ms`` gives it time to."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    skip = page.get_by_role("button", name="Skip")
    if wait_ms:
        try:
            skip.first.wait_for(state="visible", timeout=wait_ms)
        except PlaywrightTimeout:
            pass
    if skip.count():
        skip.first.click()
        page.locator("[role=dialog]").first.wait_for(state="hidden", timeout=10_000)


def metadata_row(page, key: str):
    """The row of the asset page's metadata table whose key cell is ``key``."""
    row = page.locator("tr").filter(has=page.get_by_text(key, exact=True))
    row.first.wait_for(timeout=30_000)
    return row.first


def drawn_image(locator, artifact: str) -> Image.Image:
    """Wait until the image decoded and is on screen; screenshot it as the browser drew it."""
    locator.wait_for(timeout=30_000)
    size = locator.evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])")
    assert size[0] > 0 and size[1] > 0, f"{artifact}: the image did not decode"
    box = locator.bounding_box()
    assert box and box["width"] > 50 and box["height"] > 20, (artifact, box)
    dismiss_dialogs(locator.page, wait_ms=1_500)  # a late dialog dims the colours under it
    locator.screenshot(path=str(ARTIFACTS / artifact))
    return Image.open(ARTIFACTS / artifact).convert("RGB")


def has_colour(image: Image.Image, colour: tuple[int, int, int], slack: int = 20) -> bool:
    return any(
        all(abs(a - b) <= slack for a, b in zip(pixel, colour, strict=True))
        for _, pixel in image.getcolors(image.width * image.height)
    )


def test_materializations_show_row_counts_versions_a_preview_and_plots(ui):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    lh = Lakehouse(Config.load(root=ui["root"], env={}))
    clips = lh.dataset("clips")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1400})
            page.goto(f"{ui['url']}/assets/clips", wait_until="networkidle")
            dismiss_dialogs(page)
            row_text = metadata_row(page, "rows_in_table").inner_text()
            assert str(clips.count_rows()) in row_text.split()
            assert str(clips.version) in metadata_row(page, "table_version").inner_text().split()
            preview = metadata_row(page, "preview").locator("table")
            assert "clip_id" in preview.inner_text() and preview.locator("tr").count() >= 2
            chart = drawn_image(
                metadata_row(page, "duration_histogram").locator("img"),
                "ui-clips-duration-histogram.png",
            )
            assert has_colour(chart, SLATEBLUE), "the histogram's bars are not drawn"
            page.screenshot(path=str(ARTIFACTS / "ui-clips-metadata.png"), full_page=True)

            page.goto(f"{ui['url']}/assets/third_person_dance", wait_until="networkidle")
            dismiss_dialogs(page)
            assert metadata_row(page, "rows").inner_text().split()[-1] == "1"
            assert '"clips"' in metadata_row(page, "pinned_table_versions").inner_text()
            assert "a dancer spins" in metadata_row(page, "preview").locator("table").inner_text()
            chart = drawn_image(
                metadata_row(page, "duration_histogram").locator("img"),
                "ui-subset-duration-histogram.png",
            )
            assert has_colour(chart, SLATEBLUE)

            # a strip of keyframes is too long to show inline: it opens in a dialog
            page.goto(f"{ui['url']}/assets/keyframes", wait_until="networkidle")
            dismiss_dialogs(page)
            metadata_row(page, "keyframe_strip").get_by_text("[Show Markdown]").click()
            strip = drawn_image(page.locator("[role=dialog] img"), "ui-keyframe-strip.png")
            assert strip.width > 2 * strip.height  # several thumbnails side by side
        finally:
            browser.close()
