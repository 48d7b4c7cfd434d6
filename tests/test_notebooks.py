"""The notebooks in notebooks/: committed without outputs, and run top to bottom in a real Jupyter
kernel against a lakehouse built from the real preview clips (a copy, since they write subsets)."""

import ast
import base64
import io
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pyarrow.parquet as pq
import pytest
from nbclient import NotebookClient
from PIL import Image

import lakehouse
from lakehouse.subsets.versions import get_version

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
IMAGE = re.compile(r'<img src="data:image/jpeg;base64,([^"]+)"')


def test_there_are_notebooks_to_run():
    assert {p.stem for p in PATHS} >= {"quickstart", "curation"}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_committed_notebooks_carry_no_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            where = f"{path.name}, cell {cell.get('id')}"
            assert cell.outputs == [], f"{where} has outputs; clear them before committing"
            assert cell.execution_count is None, f"{where} has an execution count"
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1, f"{path.name}: one cell tagged 'parameters' holds the settings"
    assert "LAKEHOUSE_ROOT" in parameters[0].source


@pytest.fixture
def run_notebook(preview_lakehouse, tmp_path, monkeypatch, preview_dir):
    root = tmp_path / "lakehouse"
    shutil.copytree(preview_lakehouse.root, root)
    env = {
        "LAKEHOUSE_ROOT": str(root),
        "LAKEHOUSE_VIDEO_DIR": str(preview_dir),
        "LAKEHOUSE_EXPORT_DIR": str(tmp_path / "exports"),
        "LAKEHOUSE_SUBSET_DIR": str(tmp_path / "subsets"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LAKEHOUSE_CONFIG", raising=False)

    def run(name: str) -> tuple[nbformat.NotebookNode, Path]:
        notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        client = NotebookClient(
            notebook,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOKS)}},
        )
        client.execute()  # raises CellExecutionError on the first failing cell
        return notebook, tmp_path

    return run


def outputs(notebook, kind: str) -> list[str]:
    """Every output of one MIME type (or ``stream`` text), in order."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "stream" and output.output_type == "stream":
                found.append(output.text)
            elif kind in output.get("data", {}):
                found.append(output["data"][kind])
    return found


def result_of(notebook, needle: str) -> str:
    """The plain-text result of the one cell whose source contains ``needle``."""
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and needle in c.source]
    (text,) = [o["data"]["text/plain"] for o in cell.outputs if o.output_type == "execute_result"]
    return text


def sheets(notebook) -> list[tuple[list[str], list[Image.Image]]]:
    """The contact sheets the notebook displayed: their clip ids and decoded keyframes."""
    found = []
    for page in outputs(notebook, "text/html"):
        if 'class="lh-sheet"' in page:
            clips = re.findall(r'data-clip-id="([^"]+)"', page)
            images = [Image.open(io.BytesIO(base64.b64decode(m))) for m in IMAGE.findall(page)]
            found.append((clips, images))
    return found


# quickstart and curation have tests of their own below, which check what they show; any other
# notebook added to notebooks/ is at least run top to bottom here
DEDICATED = {"quickstart", "curation"}


@pytest.mark.parametrize(
    "path", [p for p in PATHS if p.stem not in DEDICATED], ids=lambda p: p.stem
)
def test_every_other_notebook_runs_top_to_bottom(run_notebook, path):
    notebook, _ = run_notebook(path.stem)
    assert any(c.get("outputs") for c in notebook.cells if c.cell_type == "code")


def test_quickstart_runs_top_to_bottom(run_notebook):
    notebook, folder = run_notebook("quickstart")
    lh = lakehouse.open(folder / "lakehouse")
    shown = sheets(notebook)
    assert len(shown) >= 3  # the search hits, the filtered hits, the subset
    for clips, images in shown:
        assert clips and len(images) >= len(clips)
        assert all(i.format == "JPEG" and i.width > 100 for i in images)

    definition = folder / "subsets" / "ego_hand_work.sql"
    assert definition.is_file()
    record = get_version(lh, "ego_hand_work", 1)
    assert record.params == {"min_duration_s": 4} and record.row_count > 0
    assert record.model_ids["caption"].startswith("sentence-transformers:all-MiniLM-L6-v2")
    assert shown[-1][0] == record.clip_ids  # the subset's sheet shows its clips, in order
    facts = lh.sql(
        "select viewpoint, duration_s from clip_facts where list_contains($ids, clip_id)",
        {"ids": record.clip_ids},
    ).to_pylist()
    assert all(f["viewpoint"] == "ego" and f["duration_s"] >= 4 for f in facts)
    assert result_of(notebook, "reproduce_subset") == "True"

    (exported,) = (folder / "exports").glob("*.parquet")
    manifest = pq.read_table(exported)
    assert exported.name == "ego_hand_work-v1.parquet"
    assert manifest.column("clip_id").to_pylist() == record.clip_ids


def test_curation_runs_top_to_bottom(run_notebook):
    notebook, folder = run_notebook("curation")
    lh = lakehouse.open(folder / "lakehouse")
    plots = outputs(notebook, "image/png")
    assert len(plots) >= 4  # taxonomy, durations, the two subsets, pair similarities
    for data in plots:
        plot = Image.open(io.BytesIO(base64.b64decode(data)))
        assert plot.format == "PNG" and plot.width >= 400 and len(plot.getcolors(1 << 20)) > 8
    printed = "".join(outputs(notebook, "stream"))

    # the signals section: its privacy counts and the subset it materializes are what the
    # lakehouse holds
    privacy = {
        r["privacy_status"]: r["n"]
        for r in lh.sql(
            "select coalesce(privacy_status, '(none)') as privacy_status, count(*) as n "
            "from clip_facts where signals_model_id is not null group by all"
        ).to_pylist()
    }
    assert sum(privacy.values()) == lh.count("clips")  # every preview clip was analysed
    match = re.search(r"privacy: (\{[^}]*\})", printed)
    assert match and ast.literal_eval(match.group(1)) == privacy, printed
    hands_on = get_version(lh, "egocentric_hands_on_objects", 1)
    assert f"-> egocentric_hands_on_objects@1: {hands_on.row_count} clips" in printed
    assert hands_on.row_count > 0  # the preview has first-person clips with hands in view

    # the comparison states what the recorded versions hold
    a = set(get_version(lh, "third_person_dance", 1).clip_ids)
    b = set(get_version(lh, "object_pick_and_place", 1).clip_ids)
    assert (
        f"third_person_dance@1: {len(a)} clips, object_pick_and_place@1: {len(b)} clips, "
        f"{len(a & b)} in both"
    ) in printed
    if a & b:
        assert sorted(a & b) in [clips for clips, _ in sheets(notebook)]

    # the closest pair: its similarity recomputed from the stored vectors, and the library's
    # "more like this" agreeing with the notebook's numpy
    match = re.search(
        r"closest pair: (\S+) and (\S+), similarity ([0-9.]+), same source video: (\w+)", printed
    )
    assert match, printed
    first, second, similarity, same = match.groups()
    rows = lh.sql(
        "select clip_id, vector from text_embeddings where clip_id in (?, ?)", [first, second]
    ).to_pylist()
    means = []
    for clip in (first, second):
        vectors = np.array([r["vector"] for r in rows if r["clip_id"] == clip], dtype=np.float32)
        mean = vectors.sum(axis=0)
        means.append(mean / np.linalg.norm(mean))
    assert abs(float(means[0] @ means[1]) - float(similarity)) < 1e-3
    assert float(similarity) >= 0.75
    sources = lh.sql(
        "select count(distinct source_video_id) as n from clip_facts where clip_id in (?, ?)",
        [first, second],
    ).to_pylist()[0]["n"]
    assert same == str(sources == 1)
    assert f"ranks first: {second} (the pair's other clip)" in printed
    assert [first, second] in [clips for clips, _ in sheets(notebook)]
    assert re.search(r"\d+ of \d+ clips are near duplicates at 0.75", printed)
