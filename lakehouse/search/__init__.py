"""Semantic search: the --where filter, ranking and fusion, vector tables and their indexes."""
