"""Tests of extractor/lanes/: the Lane protocol and its lanes — the OpenAI Batch emulator over real HTTP through the
real `openai` SDK
(`emu`, tests/conftest.py; its rules with their sources in tests/openai_rules.py), a real llama.cpp server
(`llama_url`), stub chat servers for faults (tests/llm_fixtures.py).
"""
