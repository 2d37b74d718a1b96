"""Tests of extractor/run/: the one stage engine — `run`, its crash points (kill -9 at every stage)
and `run --pipeline`'s gate."""
