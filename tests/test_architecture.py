"""The shape of the code (docs/architecture.md): imports only go down the layers, no module is in
an import cycle (imports inside functions count; only ``if TYPE_CHECKING:`` ones are exempt), no
module takes another's private names, modules stay small, no block of code is written twice,
and the vector tables' names are spelled in one place."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import grimp
import pytest

PROJECT = Path(__file__).resolve().parent.parent
PACKAGES = ("lakehouse", "dagster_defs")
MAX_LINES = 600
REPEAT_LINES = 6
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def modules() -> dict[str, Path]:
    """Every module of the two packages, by dotted name."""
    out = {}
    for package in PACKAGES:
        for path in sorted((PROJECT / package).rglob("*.py")):
            parts = path.relative_to(PROJECT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_through_three_modules():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(edges) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_is_in_an_import_cycle(graph):
    edges = {
        m: {x for x in graph.find_modules_directly_imported_by(m) if x in graph.modules and x != m}
        for m in graph.modules
    }
    assert import_cycles(edges) == []


def test_imports_inside_functions_count_and_type_checking_ones_do_not(graph):
    # lakehouse.cli.main imports the Dagster runner inside its commands only
    assert "dagster_defs.runner" in graph.find_modules_directly_imported_by("lakehouse.cli.main")
    # lakehouse.core.locks names the Store only under `if TYPE_CHECKING:`
    assert "lakehouse.storage.store" not in graph.find_modules_directly_imported_by(
        "lakehouse.core.locks"
    )


def test_the_layer_contract_holds():
    result = subprocess.run(
        [str(LINT_IMPORTS)], cwd=PROJECT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_layer_contract_refuses_an_import_that_runs_up(tmp_path):
    """The same contract on a copy of the packages where the floor imports the facade (inside
    a function, where a reader would not see it) must break."""
    for package in PACKAGES:
        shutil.copytree(
            PROJECT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(PROJECT / "pyproject.toml", tmp_path / "pyproject.toml")
    ids = tmp_path / "lakehouse" / "core" / "ids.py"
    ids.write_text(ids.read_text() + "\n\ndef _up():\n    from lakehouse.api import Lakehouse\n")
    result = subprocess.run(
        [str(LINT_IMPORTS)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "lakehouse.core.ids -> lakehouse.api" in result.stdout


def test_no_module_imports_another_modules_private_name():
    known = modules()
    offences = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases: dict[str, str] = {}  # local name -> project module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    if target in known:
                        aliases[alias.asname or alias.name] = target
                    elif (
                        node.module in known
                        and node.module != name
                        and alias.name.startswith("_")
                        and not alias.name.startswith("__")
                    ):
                        offences.append(f"{path.name}:{node.lineno} {node.module}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in known and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and aliases[node.value.id] != name
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offences.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert offences == []


def test_no_module_is_longer_than_about_600_lines():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def significant_lines(path: Path) -> list[tuple[int, str]]:
    """Lines that carry code: not blank, not a comment, not an import, not a docstring line, not
    a function's signature (a function that forwards to another takes the same parameters),
    not lone punctuation; white space folded."""
    text = path.read_text()
    skipped: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            skipped.update(range(node.lineno, node.body[0].lineno))
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                skipped.update(range(value.lineno, value.end_lineno + 1))
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        folded = " ".join(line.split())
        if (
            number in skipped
            or not folded
            or folded.startswith("#")
            or re.match(r"(from \S+ )?import ", folded)
            or re.fullmatch(r"[\s()\[\]{},:]*", folded)
        ):
            continue
        out.append((number, folded))
    return out


def repeated_blocks(paths: dict[str, Path]) -> dict[str, list[str]]:
    """Runs of REPEAT_LINES significant lines that stand the same in two modules: the first line
    of each, with the places."""
    seen: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for name, path in paths.items():
        lines = significant_lines(path)
        for i in range(len(lines) - REPEAT_LINES + 1):
            window = tuple(text for _, text in lines[i : i + REPEAT_LINES])
            if not any(p.split(":")[0] == name for p in seen[window]):
                seen[window].append(f"{name}:{lines[i][0]}")
    return {window[0]: places for window, places in seen.items() if len(places) > 1}


def test_the_repeat_finder_finds_a_block_written_twice(tmp_path):
    block = "".join(f"    total = total + {i} * weight\n" for i in range(6))
    (tmp_path / "a.py").write_text(f"def f(weight):\n    total = 0\n{block}    return total\n")
    (tmp_path / "b.py").write_text(f"def g(weight):\n    total = 1\n{block}    return -total\n")
    (tmp_path / "c.py").write_text("def h(weight):\n    return weight\n")
    found = repeated_blocks({n: tmp_path / f"{n}.py" for n in "abc"})
    assert found == {"total = total + 0 * weight": ["a:3", "b:3"]}


def test_no_block_of_code_is_repeated_in_two_modules():
    """Six significant lines in a row that stand the same in two modules are one piece of code
    written twice: it belongs in one place that both call."""
    assert repeated_blocks(modules()) == {}


def test_the_vector_tables_are_named_in_one_module():
    names = {"clip_embeddings", "text_embeddings", "_publication"}
    where = []
    for name, path in modules().items():
        if name == "lakehouse.core.schemas":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                where.append(f"{name}:{node.lineno} {node.value!r}")
    assert where == []
