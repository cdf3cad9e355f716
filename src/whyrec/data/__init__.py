"""Data layer: one canonical schema, loaders/converters, splits and prompt text."""
