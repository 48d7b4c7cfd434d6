"""Mutation testing of the safety-critical modules with mutmut 3 (``make mutation``).

For each module in :data:`TARGETS` (or those named on the command line) this copies the project
into ``test-artifacts/mutation/<module>/``, writes a mutmut configuration that mutates that one
module and runs the tests that exercise it, runs ``mutmut run``, and saves what survived:
``summary.json`` (counts) and ``survivors.txt`` (each surviving mutant's diff). The scores and
the reason each survivor is equivalent live in ``docs/testing.md``.

    python tests/mutation.py                       # every target
    python tests/mutation.py lakehouse/query/guard.py
    HYPOTHESIS_PROFILE=deep python tests/mutation.py ...

Not part of ``make test``: a module takes minutes to an hour (each mutant runs the tests that
cover the function it changed, stopping at the first failure).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
OUT = PROJECT / "test-artifacts" / "mutation"
COPY = ("lakehouse", "dagster_defs", "sql", "tests", "pyproject.toml")
FAST = ["-m", "not slow"]

# module -> the tests that exercise it (run for every mutant that those tests cover)
TARGETS: dict[str, list[str]] = {
    "lakehouse/query/guard.py": [
        "tests/test_guard.py",
        "tests/test_sql_attacks.py",
        "tests/test_sql.py",
    ],
    "lakehouse/query/session.py": [
        "tests/test_guard.py",
        "tests/test_sql_attacks.py",
        "tests/test_sql.py",
        "tests/test_mirror.py",
        "tests/test_scale.py",
    ],
    "lakehouse/cli/ui_guard.py": ["tests/test_ui_security.py"],
    "lakehouse/subsets/privacy.py": ["tests/test_privacy.py"],
    "lakehouse/subsets/export.py": [
        "tests/test_export_safety.py",
        "tests/test_privacy.py",
        "tests/test_subsets.py",
    ],
    "lakehouse/media/discover.py": ["tests/test_discover.py", "tests/test_zoo.py"],
    "lakehouse/core/quarantine.py": ["tests/test_discover.py", "tests/test_zoo.py"],
    "lakehouse/core/locks.py": ["tests/test_locks.py", "tests/test_publication.py"],
    "lakehouse/storage/leases.py": ["tests/test_locks.py", "tests/test_publication.py"],
    "lakehouse/storage/published.py": ["tests/test_publication.py", "tests/test_locks.py"],
    "lakehouse/publication/publish.py": ["tests/test_publication.py", "tests/test_locks.py"],
    "lakehouse/publication/checks.py": [
        "tests/test_checks.py",
        "tests/test_publication.py",
        "tests/test_privacy.py",
    ],
    "lakehouse/subsets/versions.py": ["tests/test_subsets.py", "tests/test_crash.py"],
}
# modules whose slow tests (servers, process kills) must run too; none: mutmut sees which tests
# reach a function only in the test process, so code that runs in a server or worker process the
# tests start (the UI guard's main()) counts as reached by no test, and is listed as such
RUN_SLOW: set[str] = set()


def run(module: str) -> dict:
    tests = [t for t in TARGETS[module] if (PROJECT / t).exists()]
    work = OUT / module.replace("/", ".").removesuffix(".py")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in COPY:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, work / name)
    # mutmut reads [tool.mutmut] from pyproject.toml before setup.cfg: keep one source
    pyproject = (work / "pyproject.toml").read_text()
    (work / "pyproject.toml").write_text(pyproject.replace("[tool.mutmut]", "[tool.unused]"))
    args = ["-p", "no:cacheprovider", "-x", "-q", *([] if module in RUN_SLOW else FAST)]
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths=lakehouse\n"
        f"only_mutate={module}\n"
        "also_copy=\n    dagster_defs/\n    sql/\n"
        "pytest_add_cli_args_test_selection=\n" + "".join(f"    {t}\n" for t in tests) + ""
        "pytest_add_cli_args=\n" + "".join(f"    {a}\n" for a in args) + ""
        "process_isolation=forkserver\n"
    )
    env = dict(os.environ)
    env.setdefault("LAKEHOUSE_SHARED_DIR", str(PROJECT.parent / "shared"))
    env.setdefault("HYPOTHESIS_PROFILE", "ci")
    mutmut = [sys.executable, "-m", "mutmut"]
    with open(work / "mutmut.log", "w") as log:
        subprocess.run([*mutmut, "run"], cwd=work, env=env, stdout=log, stderr=log, check=False)
    subprocess.run([*mutmut, "export-cicd-stats"], cwd=work, env=env, capture_output=True)
    stats_file = work / "mutants" / "mutmut-cicd-stats.json"
    if not stats_file.exists():  # mutmut stopped before testing a mutant: its log says why
        summary = {"module": module, "tests": tests, "error": "no mutant was tested; see the log"}
        (work / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary
    stats = json.loads(stats_file.read_text())
    listing = subprocess.run(
        [*mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True
    ).stdout
    # a mutant no selected test reaches survives too: both are listed
    survivors = [
        line.split(":")[0].strip()
        for line in listing.splitlines()
        if line.rstrip().endswith(("survived", "no tests"))
    ]
    diffs = []
    for name in survivors:
        shown = subprocess.run(
            [*mutmut, "show", name], cwd=work, env=env, capture_output=True, text=True
        ).stdout
        diffs.append(f"## {name}\n{shown}")
    (work / "survivors.txt").write_text("\n".join(diffs))
    # a mutant that hangs the tests past their time limit is caught too
    total = stats["total"] - stats.get("skipped", 0)
    score = (stats["killed"] + stats["timeout"]) / total if total else 1.0
    summary = {"module": module, "tests": tests, **stats, "score": round(score, 3)}
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str]) -> int:
    modules = argv or list(TARGETS)
    unknown = [m for m in modules if m not in TARGETS]
    if unknown:
        print(f"unknown modules {unknown}; choose from {list(TARGETS)}", file=sys.stderr)
        return 2
    for module in modules:
        summary = run(module)
        if "error" in summary:
            print(f"{module}: {summary['error']}", flush=True)
            continue
        print(
            f"{module}: {summary['killed']} killed, {summary['survived']} survived, "
            f"{summary['timeout']} timed out, {summary['no_tests']} without tests of "
            f"{summary['total']} (score {summary['score']:.0%})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
