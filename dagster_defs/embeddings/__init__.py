"""Embeddings domain: CLIP and caption vectors, and the search indexes over them."""
