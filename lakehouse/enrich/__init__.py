"""The stages that add to ingested clips: caption and CLIP embeddings, human-centric signals,
predicted viewpoints and near-duplicate clusters."""
