"""Tests of extractor/review/: the review page, as HTML and in a real Chromium (the browser fixtures are
tests/browser_fixtures.py)."""
