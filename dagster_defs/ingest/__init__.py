"""Ingest domain: source folders → videos, annotations, clips, keyframes, quarantine."""
