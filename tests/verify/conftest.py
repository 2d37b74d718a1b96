"""Tests of extractor/verify/: grounding, leaks and hallucinations, each answer against its own source text
(tests/verify_fixtures.py)."""
