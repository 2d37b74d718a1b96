"""The interface both graph stores offer to commit and rollback."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from extractor.graph.cypher import Dialect, Statement


@dataclass(frozen=True)
class WriteCounts:
    nodes_created: int = 0
    nodes_deleted: int = 0
    relationships_created: int = 0
    relationships_deleted: int = 0

    def __add__(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(
            self.nodes_created + other.nodes_created,
            self.nodes_deleted + other.nodes_deleted,
            self.relationships_created + other.relationships_created,
            self.relationships_deleted + other.relationships_deleted,
        )


class GraphStore(Protocol):
    dialect: Dialect
    target: str  # where the graph lives, for messages and commit.json; never holds credentials

    def ensure_schema(self, relationship_types: Iterable[str] = ()) -> None:
        """Create the indexes the statements rely on, and those of these relationship types, if missing."""

    def read(self, statement: Statement, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a read statement; one dict per record, keyed by column."""

    def write(self, batch: Sequence[tuple[Statement, Mapping[str, Any]]]) -> WriteCounts:
        """Run the statements in order as one atomic unit (a transaction, or MULTI/EXEC): send(prepare(batch))."""

    def prepare(self, batch: Sequence[tuple[Statement, Mapping[str, Any]]]) -> Any:
        """The batch as `send` takes it (quoted, encoded); thread-safe, so it can run ahead of `send`."""

    def send(self, prepared: Any) -> WriteCounts:
        """Run a prepared batch as one atomic unit."""

    def close(self) -> None:
        """Release connections (an embedded server is stopped by whoever opened it)."""
