"""Shared fixtures: every test gets its own jobs dir, data dir and caches; real servers are session-scoped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.openai_emulator import BatchEmulator

# The browser fixtures, registered once for the two test modules that use them.
pytest_plugins = ["tests.browser_fixtures"]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_cache: Path) -> Path:
    """Tests never touch the user's jobs, graph data, caches or API keys."""
    monkeypatch.setenv("EXTRACTOR_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv("EXTRACTOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EXTRACTOR_CACHE_DIR", str(model_cache))
    monkeypatch.delenv("EXTRACTOR_GRAPH_URI", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("EXTRACTOR_LEDGER", raising=False)
    monkeypatch.delenv("EXTRACTOR_TEST_CRASH_AFTER", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def corpus() -> list[dict]:
    """The Re-DocRED dev split (tests/data), loaded once."""
    from tests.redocred import load_redocred

    return load_redocred()


@pytest.fixture
def emu(corpus: list[dict], monkeypatch: pytest.MonkeyPatch) -> Iterator[BatchEmulator]:
    """The OpenAI Files + Batches emulator answering with Re-DocRED gold annotations, the SDK pointed at it through
    the environment, and the client's retry backoff shrunk to milliseconds."""
    from tests.job_fixtures import fast_backoff
    from tests.openai_emulator import BatchEmulator, GoldAnswerer

    with BatchEmulator(GoldAnswerer(corpus)) as emulator:
        monkeypatch.setenv("OPENAI_API_KEY", emulator.api_key)
        monkeypatch.setenv("OPENAI_BASE_URL", emulator.base_url)
        fast_backoff(monkeypatch)
        yield emulator


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One assembled GGUF per test session, outside the user's ~/.cache."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    """Three short real documents from the bundled examples."""
    src = Path(__file__).resolve().parent.parent / "examples" / "docs"
    target = tmp_path / "docs"
    target.mkdir()
    for path in sorted(src.glob("*.txt"))[:3]:
        (target / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return target


@pytest.fixture(scope="session")
def llama_url(model_cache: Path):
    """A real llama.cpp server (xllamacpp + the bundled Gemma 270M) for the whole session."""
    from extractor.lanes.embedded_llm import EmbeddedLlamaServer, model_path

    with EmbeddedLlamaServer(model_path(model_cache / "models"), slots=4) as base_url:
        yield base_url


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the session's Neo4j in the background once tests that need it are collected (issue 17)."""
    from tests.graph.helpers import neo4j_home, neo4j_wanted
    from tests.neo4j_server import EARLY

    if neo4j_wanted(session.items) and not EARLY.begun:
        EARLY.begin(neo4j_home())


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.neo4j_server import EARLY

    EARLY.stop()
