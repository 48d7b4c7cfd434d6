"""Signals domain: hand/body/face/quality signals, predicted viewpoint, near-duplicates."""
