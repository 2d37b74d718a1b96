"""Tests of extractor/reports/: the ledger, `report` (terminal, JSON, HTML in a real Chromium) and `compare`."""
