"""What an ingest run did, whichever engine ran it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rag.items import Severity, SourceError, SourceErrorKind


@dataclass
class IngestReport:
    """What a run did: new items, items already present, stored versions replaced by new ones, stored items
    removed without a new version, problems met. The collection's count changes by ``added - removed``."""

    added: int = 0
    unchanged: int = 0
    replaced: int = 0
    removed: int = 0
    #: Of the items written, those the encoder ran on (the others took the vectors of stored items of the same
    #: content: a file renamed or moved, see ``rag.ingest.sync.Donors``).
    encoded: int = 0
    problems: list[SourceError] = field(default_factory=list)
    seconds: float = 0.0
    #: Of ``seconds``, those before the first encoder could encode: the Ray engine starts its actors and
    #: loads the model in them within the run; the local engine's encoder is loaded before (0 here).
    warmup_seconds: float = 0.0
    #: True while the store indexes what the run wrote (after the last batch): progress shows "indexing".
    indexing: bool = False

    @property
    def skipped(self) -> list[SourceError]:
        """Problems that cost an input (as opposed to warnings)."""
        return [p for p in self.problems if p.severity == Severity.ERROR]

    @property
    def passed_over(self) -> list[SourceError]:
        """Files in a folder that no source reads, each named."""
        return [p for p in self.problems if p.kind is SourceErrorKind.PASSED_OVER]

    @property
    def warnings(self) -> list[SourceError]:
        """Problems that cost nothing but need a look (passed-over files are counted apart)."""
        passed = SourceErrorKind.PASSED_OVER
        return [p for p in self.problems if p.severity == Severity.WARNING and p.kind is not passed]

    @property
    def processed(self) -> int:
        """Inputs dealt with so far: added, already present, or skipped."""
        return self.added + self.unchanged + len(self.skipped)

    @property
    def items_per_second(self) -> float:
        return self.added / self.seconds if self.seconds else 0.0

    @property
    def warm_items_per_second(self) -> float:
        """Items per second once an encoder was ready (the warm-up left out)."""
        warm = self.seconds - self.warmup_seconds
        return self.added / warm if warm > 0 else 0.0

    def write_jsonl(self, path: Path, *, collection: str | None = None) -> str:
        """Append this run to the JSONL report at ``path``: one line for the run (its time, the collection, the
        summary), then one per problem, each carrying the run's time. Earlier runs' lines are kept. Returns the
        run's time (UTC, ISO 8601)."""
        at = datetime.now(timezone.utc).isoformat()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"run": at, "collection": collection, "summary": self.summary()}) + "\n")
            for problem in self.problems:
                f.write(json.dumps({"run": at, **problem.model_dump(mode="json")}) + "\n")
        return at

    def summary(self) -> dict[str, object]:
        return {
            "added": self.added,
            "unchanged": self.unchanged,
            "replaced": self.replaced,
            "removed": self.removed,
            "encoded": self.encoded,
            "skipped": len(self.skipped),
            "warnings": len(self.warnings),
            "passed_over": len(self.passed_over),
            "failed": [{"source": p.source, "kind": p.kind.value, "reason": p.reason} for p in self.skipped],
            "seconds": round(self.seconds, 2),
            "warmup_seconds": round(self.warmup_seconds, 2),
            "items_per_second": round(self.items_per_second, 2),
        }
