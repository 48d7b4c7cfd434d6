"""Embedding assets, partitioned by source like the ingest assets they read: caption and CLIP
vectors, then the search indexes."""

from dagster_defs.stages import stage_assets

embedding_assets = stage_assets("embeddings")
