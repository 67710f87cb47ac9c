"""What happened to every input: the problems that make an input unusable, the skip log, and the run summary.

Every input that does not become a sample is named in `skipped.csv` with a reason, so nothing is dropped
silently; with `strict=True` the first such input stops the run instead.
"""

import csv
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


class InputProblem(Exception):
    """An input that cannot become a sample.

    Args:
        file: The offending file (and `:line` for a row of a label file), as shown to the user.
        code: A short machine-readable reason, e.g. `"corrupt_image"`; summary counts are keyed by it.
        message: What is wrong and what was expected, for people.
    """

    def __init__(self, file: str, code: str, message: str):
        self.file = str(file)
        self.code = code
        self.message = message
        super().__init__(f"{self.file}: {code}: {message}")

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self):
        # Worker processes send problems back by pickling; the default would call __init__ with one argument.
        return (type(self), (self.file, self.code, self.message))


class StrictModeError(RuntimeError):
    """Raised in strict mode by the first input that would have been skipped; names the file and the problem."""

    def __init__(self, problem: InputProblem):
        self.problem = problem
        super().__init__(
            f"Bad input {problem.file}: {problem.reason} (strict mode stops at the first bad input; "
            "run without --strict to skip it and list it in skipped.csv)"
        )


class NoSamplesError(ValueError):
    """A build whose inputs gave no sample: nothing is written, and the message says what was found and skipped
    instead of an empty dataset that a training run would only refuse later."""

    def __init__(self, source: str, inputs, num_inputs: int, skip_log: "SkipLog"):
        where = ", ".join(str(path) for path in inputs) or "the generator"
        message = f"The {source} build of {where} has no sample: {num_inputs} input(s) to read"
        if len(skip_log):
            reasons = ", ".join(f"{code} {count}" for code, count in skip_log.counts().items())
            examples = "; ".join(f"{problem.file}: {problem.reason}" for problem in skip_log.entries[:3])
            message += f", {len(skip_log)} skipped ({reasons}; e.g. {examples})"
        super().__init__(message + ". Nothing was written.")


@dataclass
class SkipLog:
    """Collects skipped inputs; in strict mode, raises on the first one instead."""

    strict: bool = False
    entries: list[InputProblem] = field(default_factory=list)

    def add(self, problem: InputProblem) -> None:
        if self.strict:
            raise StrictModeError(problem)
        logger.debug("Skipping %s", problem)
        self.entries.append(problem)

    def __len__(self) -> int:
        return len(self.entries)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(problem.code for problem in self.entries).items()))

    def write_csv(self, path: Path) -> None:
        """Writes `file,reason`, one row per skipped input, in the order met."""
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "reason"])
            for problem in self.entries:
                writer.writerow([problem.file, problem.reason])


def write_summary(path: Path, summary: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, ensure_ascii=False, sort_keys=False)
        handle.write("\n")


__all__ = ["InputProblem", "NoSamplesError", "SkipLog", "StrictModeError", "write_summary"]
