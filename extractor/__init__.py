"""extractor: isolated batch extraction, verified against its own source before it reaches a graph."""

__version__ = "0.1.0"
