"""Publication: the blocking checks and the step that shows readers only checked versions."""
