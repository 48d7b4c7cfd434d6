"""The ingest stages of one source: the stage base and streaming plans, the source registry,
videos, annotation files and annotations, clips and keyframes."""
