"""Diagnostics a reader can run on their own code, one module per kind of failure."""
