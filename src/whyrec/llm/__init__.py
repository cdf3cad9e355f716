"""Causal LM loading, batching with label masks, generation and the shared training loop."""
