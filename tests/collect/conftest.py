"""Tests of extractor/collect/: one outcome per document from whatever a provider sends back: odd JSON shapes, broken
files, damaged jobs."""
