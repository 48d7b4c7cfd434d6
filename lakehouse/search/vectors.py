"""Nearest-neighbour queries over a vector table (``clip_embeddings``, ``text_embeddings``).

How a query runs depends on how many rows its filter leaves (``search`` settings):

- **exact**, when at most ``exact_max_rows`` rows pass, or the table has no ANN index yet, or
  a filter makes the ANN plan probe every partition (its neighbours lie anywhere) and the
  passing rows' vectors fit the cache: the
  passing rows' vectors (and row ids) are read once per (table version, filter) and kept in a
  memory-bounded cache (``cache_mb``), so every query under that filter is one matrix product
  over exactly those rows, and only the best ``k`` rows' columns are read — nothing is missed,
  and a repeated filter costs a few milliseconds. Reading a row's vector costs Lance ~2.5 µs
  (measured), so the first query under a filter of 12,000 rows pays ~30 ms once. Past the
  cache budget the scan runs inside Lance.
- **ann**, otherwise: the IVF index with a Lance prefilter. A filter's nearest rows spread over
  more partitions, and the 1-bit RaBitQ ranking needs more refinement, the fewer rows pass, so
  ``nprobes`` and ``refine_factor`` grow with 1/√selectivity (see bench/README.md);
  ``nprobes`` also grows with the index: it is set for 256 partitions (about 1M vectors) and
  scaled to the index's partition count, so a 10M-vector index probes the same fraction.

Every query reads the table's published version (see ``lakehouse.publication.publish``; the latest
one for a table never published), so a write by another process is seen once its checks pass,
through one Lance dataset per table that is checked out at the new version rather than reopened,
which keeps Lance's index cache warm (reopening costs ~40 ms a query on a 1M-row index). Facts that
change only with the version — row count, the index, filter counts, whether every row has the
queried model — are computed once per version.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.core.errors import InputError
from lakehouse.storage.filters import sql_literal
from lakehouse.storage.vectors import read_vectors, to_matrix

if TYPE_CHECKING:
    import lance
    import numpy as np

    from lakehouse.storage.store import Store

# A filter passing this fraction of the rows or more searches with the configured probes.
FULL_EFFORT_SELECTIVITY = 0.25
COUNT_CACHE_SIZE = 256
# ``search.nprobes`` is tuned for an index of this many partitions (IVF on ~1M vectors)
PARTITIONS_PER_NPROBES_UNIT = 256


@dataclass
class Plan:
    """How one query ran: ``exact`` (cached matrix), ``scan`` (inside Lance) or ``ann``."""

    kind: str
    passing: int
    rows: int
    nprobes: int | None = None
    refine_factor: int | None = None


@dataclass
class _Block:
    """The rows one filter leaves at one version: their row ids and vectors."""

    row_ids: np.ndarray
    matrix: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes) + int(self.row_ids.nbytes)


@dataclass
class _Version:
    """What is known about one version of the table."""

    version: int
    ds: lance.LanceDataset
    rows: int
    indexed: bool
    partitions: int = 0
    index_name: str | None = None
    counts: OrderedDict[str, int] = field(default_factory=OrderedDict)
    parses: OrderedDict[str, bool] = field(default_factory=OrderedDict)
    ivf: _Ivf | bool | None = None  # built on the first filtered ANN query; False: unavailable
    spread: OrderedDict[str, np.ndarray] = field(default_factory=OrderedDict)


class VectorTable:
    """One vector table of a lakehouse, queried at its published version."""

    def __init__(self, lh: Store, name: str):
        self.lh = lh
        self.name = name
        self._ds: lance.LanceDataset | None = None
        self._current: _Version | None = None
        self._blocks: OrderedDict[tuple[int, str], _Block] = OrderedDict()
        self._lock = threading.Lock()

    # -- the current version ----------------------------------------------------------------
    def current(self) -> _Version:
        """The table at its published version (reloaded only when that version changed)."""
        try:
            return self._checkout()
        except (OSError, ValueError):  # the table was dropped and made again: start over
            self._ds, self._current = None, None
            self._blocks.clear()
            return self._checkout()

    def _checkout(self) -> _Version:
        if self._ds is None:
            self._ds = self.lh.dataset(self.name)
            if self._ds is None:
                raise InputError(
                    f"There is no {self.name} table yet; ingest a source "
                    "(or run `lakehouse embed`) first."
                )
        latest = self.lh.publication().get(self.name)  # what readers see: the published one
        if latest is None:  # never published (a table written outside the pipeline): the newest
            latest = self._ds.latest_version
        if self._current is None or self._current.version != latest:
            ds = self._ds if self._ds.version == latest else self._ds.checkout_version(latest)
            self._ds = ds
            index = next((i for i in ds.describe_indices() if "vector" in i.field_names), None)
            partitions = _partitions(ds, index.name) if index is not None else 0
            self._current = _Version(
                latest,
                ds,
                ds.count_rows(),
                index is not None,
                partitions,
                index.name if index is not None else None,
            )
            for key in [k for k in self._blocks if k[0] != latest]:
                del self._blocks[key]
        return self._current

    def accepts(self, expression: str) -> bool:
        """Whether Lance reads the filter ``expression`` over this table (cached per version:
        the answer depends on the text and the table's schema only)."""
        version = self.current()
        if expression not in version.parses:
            try:
                version.ds.scanner(filter=expression, columns=["clip_id"], limit=1).explain_plan()
                ok = True
            except Exception:  # a parse or type error inside Lance, whatever its class
                ok = False
            version.parses[expression] = ok
            if len(version.parses) > COUNT_CACHE_SIZE:
                version.parses.popitem(last=False)
        return version.parses[expression]

    def count(self, version: _Version, expression: str | None) -> int:
        if not expression:
            return version.rows
        if expression in version.counts:
            version.counts.move_to_end(expression)
            return version.counts[expression]
        n = version.ds.count_rows(expression)
        version.counts[expression] = n
        if len(version.counts) > COUNT_CACHE_SIZE:
            version.counts.popitem(last=False)
        return n

    def expression(self, version: _Version, model_id: str, condition: str | None) -> str | None:
        """The Lance filter: the model and the condition; the model term is left out when
        every row has that model (it would turn an unfiltered query into a prefiltered one)."""
        model_term = f"model_id = {sql_literal(model_id)}"
        parts = []
        if self.count(version, model_term) != version.rows:
            parts.append(model_term)
        if condition:
            parts.append(f"({condition})")
        return " AND ".join(parts) or None

    # -- queries ----------------------------------------------------------------------------
    def nearest(
        self,
        vector: np.ndarray,
        *,
        model_id: str,
        condition: str | None,
        columns: list[str],
        limit: int,
    ) -> tuple[list[dict[str, Any]], Plan]:
        """The ``limit`` rows nearest ``vector`` by dot product (``score``), best first."""
        import numpy as np

        settings = self.lh.config.search
        q = np.ascontiguousarray(vector, dtype=np.float32)
        with self._lock:
            version = self.current()
            expression = self.expression(version, model_id, condition)
            passing = self.count(version, expression)
            if passing == 0:
                return [], Plan("exact", 0, version.rows)
            dim = version.ds.schema.field("vector").type.list_size
            if q.shape != (dim,):
                raise InputError(
                    f"The query vector has {q.size} values but {self.name} holds {dim}-d vectors."
                )
            budget = settings.cache_mb * 1024 * 1024
            exact = passing <= settings.exact_max_rows or not version.indexed
            fits = passing * (dim * 4 + 256) <= budget
            if exact and fits:
                return self._exact(version, expression, budget, q, columns, limit, passing)
        near: dict[str, Any] = {"column": "vector", "q": q, "k": limit, "metric": "dot"}
        if exact:
            near["use_index"] = False
            plan = Plan("scan", passing, version.rows)
        else:
            boost = math.sqrt(max(1.0, FULL_EFFORT_SELECTIVITY * version.rows / passing))
            # the configured probes are per PARTITIONS_PER_NPROBES_UNIT partitions: a bigger
            # index (more partitions, same rows per partition) probes the same fraction
            scale = max(1.0, version.partitions / PARTITIONS_PER_NPROBES_UNIT)
            base = math.ceil(settings.nprobes * scale)
            nprobes = math.ceil(base * boost)
            spread = None
            if expression:
                with self._lock:
                    spread = self._spread(version, expression, passing)
            refine = math.ceil(settings.refine_factor * boost)
            if expression and spread is not None:
                reach, far = _probes_for(version, spread, q, base, passing, boost)
                nprobes = max(nprobes, reach)
                if far:
                    refine = max(refine, settings.refine_factor * FAR_REFINE_FACTOR)
            if base < version.partitions <= nprobes and fits:
                # the filter makes the search probe every partition, ranking the 1-bit codes of
                # all the passing rows, which recalled 0.60 of the top 10 for a 3% filter at
                # 10M: reading those rows' vectors once (cached per filter) misses nothing
                with self._lock:
                    return self._exact(version, expression, budget, q, columns, limit, passing)
            near |= {"nprobes": nprobes, "refine_factor": refine}
            if settings.query_parallelism:
                near["query_parallelism"] = settings.query_parallelism
            plan = Plan("ann", passing, version.rows, nprobes, refine)
        table = version.ds.to_table(
            columns=[*columns, "_distance"],
            nearest=near,
            filter=expression,
            prefilter=True if expression else None,
        )
        rows = table.to_pylist()
        for row in rows:
            row["score"] = 1.0 - row.pop("_distance")
        return rows, plan

    def _exact(
        self,
        version: _Version,
        expression: str | None,
        budget: int,
        q: np.ndarray,
        columns: list[str],
        limit: int,
        passing: int,
    ) -> tuple[list[dict[str, Any]], Plan]:
        """The exact top ``limit`` over the passing rows' cached block (under the lock)."""
        block = self._block(version, expression, budget, passing)
        return _top(version.ds, block, q, columns, limit), Plan("exact", passing, version.rows)

    def _spread(self, version: _Version, expression: str, passing: int) -> np.ndarray | None:
        """Expected passing rows per IVF partition under ``expression`` (cached per version and
        filter), estimated from a fixed random sample of the table; None where the index
        cannot be read this way (the caller then probes by global selectivity alone)."""
        if version.ivf is None:
            version.ivf = _Ivf.build(version) or False
        if version.ivf is False:
            return None
        if expression in version.spread:
            version.spread.move_to_end(expression)
            return version.spread[expression]
        spread = version.ivf.spread(expression, passing)
        if spread is None:
            return None
        version.spread[expression] = spread
        if len(version.spread) > COUNT_CACHE_SIZE:
            version.spread.popitem(last=False)
        return spread

    def _block(
        self, version: _Version, expression: str | None, budget: int, passing: int
    ) -> _Block:
        """The passing rows' vectors, read batch by batch into one matrix of ``passing`` rows
        (the count at this version), so reading a block peaks at the block plus one batch."""
        key = (version.version, expression or "")
        block = self._blocks.get(key)
        if block is not None:
            self._blocks.move_to_end(key)
            return block
        found = read_vectors(version.ds, filter=expression, row_ids=True, rows=passing)
        block = _Block(found.columns["_rowid"], found.matrix)
        self._blocks[key] = block
        total = sum(b.nbytes for b in self._blocks.values())
        while total > budget and len(self._blocks) > 1:
            _, old = self._blocks.popitem(last=False)
            total -= old.nbytes
        return block


# -- filter-aware probing ------------------------------------------------------------------
# An IVF search probes the partitions whose centroids are nearest the query. Under a filter that
# correlates with where vectors lie (``viewpoint = 'ego'`` for a query about a third-person
# scene), those partitions hold few passing rows, and the filtered top k lies in partitions
# further away: probing by global selectivity alone missed a third of it (recall@10 0.62 on the
# synthetic HumanNet-like corpus, bench/README.md). So the probes go down the query's partition
# order until they cover as many *passing* rows as an unfiltered search of the same effort would
# examine rows (times the selectivity boost), estimated per partition from a fixed random sample
# of the table (SAMPLE_PER_PARTITION rows per partition, at least SAMPLE_MIN).
SAMPLE_PER_PARTITION = 16
FAR_SHARE = 0.5
FAR_REFINE_FACTOR = 20
SAMPLE_MIN = 20_000
SAMPLE_MAX = 100_000


@dataclass
class _Ivf:
    """The index's centroids and partition sizes, and a sample of rows with their partitions."""

    centroids: np.ndarray  # (partitions, dim)
    sizes: np.ndarray  # rows per partition
    sample: Any  # pyarrow Table: the scalar columns of the sampled rows
    assigned: np.ndarray  # partition of each sampled row
    by_l2: bool  # partitions ordered by L2 distance (else by dot product) to the query

    @classmethod
    def build(cls, version: _Version) -> _Ivf | None:
        import os

        import numpy as np

        if not version.index_name or not version.partitions or not version.rows:
            return None
        os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "true")
        try:
            stats = version.ds.stats.index_stats(version.index_name)["indices"][0]
            centroids = np.asarray(stats["centroids"], dtype=np.float32)
            sizes = np.asarray([p["size"] for p in stats["partitions"]], dtype=np.float64)
        except (KeyError, IndexError, ValueError, TypeError, OSError):
            return None
        if centroids.ndim != 2 or len(centroids) != len(sizes):
            return None
        n = min(version.rows, SAMPLE_MAX, max(SAMPLE_MIN, SAMPLE_PER_PARTITION * len(sizes)))
        rng = np.random.default_rng(version.version)
        offsets = np.sort(rng.choice(version.rows, size=n, replace=False))
        scalar = [f.name for f in version.ds.schema if f.name != "vector"]
        table = version.ds.take(offsets.tolist(), columns=[*scalar, "vector"])
        matrix = to_matrix(table.column("vector"))
        dots = matrix @ centroids.T
        # Lance assigns by its distance; which one matches is read off the partition sizes
        by_dot = np.argmax(dots, axis=1)
        by_l2 = np.argmax(dots - 0.5 * (centroids * centroids).sum(axis=1), axis=1)
        share = sizes / sizes.sum()

        def misfit(assigned: np.ndarray) -> float:
            counts = np.bincount(assigned, minlength=len(sizes)) / len(assigned)
            return float(np.abs(counts - share).sum())

        use_l2 = misfit(by_l2) <= misfit(by_dot)
        return cls(
            centroids,
            sizes,
            table.drop_columns(["vector"]),
            by_l2 if use_l2 else by_dot,
            bool(use_l2),
        )

    def spread(self, expression: str, passing: int) -> np.ndarray | None:
        """Expected passing rows per partition: each partition's sampled pass rate (shrunk
        towards the global one where the sample is thin) times its size."""
        import duckdb
        import numpy as np

        con = duckdb.connect()
        try:
            con.execute("SET enable_external_access = false")
            con.register("sample", self.sample)
            # the expression passed the --where checks (one condition over plain columns)
            result = con.execute(f"SELECT coalesce(({expression}), false) AS p FROM sample")
            mask = np.asarray(result.fetchnumpy()["p"], dtype=bool)
        except duckdb.Error:
            return None
        finally:
            con.close()
        k = len(self.sizes)
        sampled = np.bincount(self.assigned, minlength=k).astype(np.float64)
        hits = np.bincount(self.assigned[mask], minlength=k).astype(np.float64)
        rate = passing / max(1.0, float(self.sizes.sum()))
        prior = 2.0
        return self.sizes * (hits + prior * rate) / (sampled + prior)

    def scores(self, q: np.ndarray) -> np.ndarray:
        """How near ``q`` each partition's centroid is, higher nearer, as the index ranks them."""
        scores = self.centroids @ q
        if self.by_l2:
            scores = scores - 0.5 * (self.centroids * self.centroids).sum(axis=1)
        return scores


def _probes_for(
    version: _Version, spread: np.ndarray, q: np.ndarray, base: int, passing: int, boost: float
) -> tuple[int, bool]:
    """How many partitions (nearest ``q`` first) hold the passing rows an unfiltered search of
    ``base`` probes would examine in rows, times ``boost``; and
    whether the query is *far* from the passing rows: the best-scoring partition where the
    filter passes at least half its overall rate scores less than halfway from the median
    partition to the best one. Far from the query the filtered neighbours score little above
    the rest (0.2 against 0.93 near it, on the synthetic corpus) and lie in any partition, so
    every partition is probed and the 1-bit codes' ranking gets FAR_REFINE_FACTOR times the
    exact re-ranking."""
    import numpy as np

    ivf = version.ivf
    assert isinstance(ivf, _Ivf)
    scores = ivf.scores(q)
    order = np.argsort(-scores, kind="stable")
    rate = passing / max(1, version.rows)
    rich = spread >= 0.5 * rate * ivf.sizes
    if rich.any():
        top, middle = float(scores[order[0]]), float(np.median(scores))
        if float(scores[rich].max()) - middle < FAR_SHARE * (top - middle):
            return version.partitions, True
    per_partition = version.rows / max(1, version.partitions)
    want = min(base * per_partition * boost, 0.99 * passing)
    covered = np.cumsum(spread[order])
    n = int(np.searchsorted(covered, want)) + 1
    return int(min(version.partitions, n)), False


def _partitions(ds: lance.LanceDataset, index: str) -> int:
    try:
        return int(ds.stats.index_stats(index)["indices"][0]["num_partitions"])
    except (KeyError, IndexError, ValueError, TypeError, OSError):
        return 0


def _top(
    ds: lance.LanceDataset, block: _Block, q: np.ndarray, columns: list[str], limit: int
) -> list[dict[str, Any]]:
    """The best ``limit`` rows of a block by dot product, with their ``columns`` read by row id."""
    import numpy as np

    scores = block.matrix @ q
    n = min(limit, len(scores))
    top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    top = top[np.argsort(-scores[top], kind="stable")]
    ids = block.row_ids[top].tolist()
    rows = take_by_row_id(ds, ids, columns)
    for row, i in zip(rows, top.tolist(), strict=True):
        row["score"] = float(scores[i])
    return rows


def take_by_row_id(
    ds: lance.LanceDataset, row_ids: list[int], columns: list[str]
) -> list[dict[str, Any]]:
    """Rows by Lance row id, in the order given."""
    take_rows = getattr(ds, "_take_rows", None)  # ~1 ms for 10 rows; not public API
    if take_rows is not None:
        return take_rows(row_ids, columns=columns).to_pylist()
    table = ds.to_table(
        columns=columns, filter=f"_rowid IN ({', '.join(map(str, row_ids))})", with_row_id=True
    )
    by_id = {r.pop("_rowid"): r for r in table.to_pylist()}
    return [by_id[i] for i in row_ids]


_TABLES_LOCK = threading.Lock()


def vector_table(lh: Store, name: str) -> VectorTable:
    """The query handle of table ``name`` of ``lh``, kept with the handle."""
    with _TABLES_LOCK:
        tables = lh.caches.setdefault(__name__, {})
        if name not in tables:
            tables[name] = VectorTable(lh, name)
        return tables[name]
