"""What an ingest run did, whichever engine ran it."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    def write_jsonl(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for problem in self.problems:
                f.write(problem.model_dump_json() + "\n")

    def summary(self) -> dict[str, object]:
        return {
            "added": self.added,
            "unchanged": self.unchanged,
            "replaced": self.replaced,
            "removed": self.removed,
            "skipped": len(self.skipped),
            "warnings": len(self.warnings),
            "passed_over": len(self.passed_over),
            "seconds": round(self.seconds, 2),
            "warmup_seconds": round(self.warmup_seconds, 2),
            "items_per_second": round(self.items_per_second, 2),
        }
