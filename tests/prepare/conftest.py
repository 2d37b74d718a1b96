"""Tests of extractor/prepare/: intake of hostile folders and files, request lines, isolation, token counts and prices.

Shared fixtures (jobs dir, example documents) are in tests/conftest.py.
"""
