"""DuckDB over the lakehouse: the one parse-tree reader, the guard, the locked-down session, the
isolated query process, the caption pushdown and the semantic SQL functions."""
