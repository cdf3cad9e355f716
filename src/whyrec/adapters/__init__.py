"""Modules that connect collaborative embeddings to an LLM."""
