"""The command line: the typer app, the terminal renderers, and the one error boundary. The core never imports this."""

from extractor.cli.commands import app, main

__all__ = ["app", "main"]
