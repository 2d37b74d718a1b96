"""Tests of extractor/spec/: extraction specs against OpenAI strict-mode rules, the bundled specs as package data."""
