"""Tests of extractor/cli/: the command line's contract: exit codes, one-line errors, --version, help, and no secret
in any output."""
