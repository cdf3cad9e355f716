"""Collaborative encoders (LightGCN, ...) that give users and items the embeddings the LLM side injects."""
