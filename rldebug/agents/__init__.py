"""The book's agents, each readable top to bottom and importable piece by piece."""
