"""Work on media files, with no table access: discovery, probing, frame sampling, cutting,
detectors, supervised worker processes, the compute backends, and synthetic test videos."""
