"""The package version, in a module of its own: lower layers (outputs, methods, eval) record it
in what they write without importing the package root, whose `load_run` reaches up to the API."""

__version__ = "0.1.0"
