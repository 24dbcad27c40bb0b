"""The benchmark's result shape: a console table and the JSON file."""

import json
import statistics
from argparse import ArgumentTypeError
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Case:
    name: str
    p50_ms: float | None
    p95_ms: float | None
    baseline_p95_ms: float | None
    ratio: float | None
    target_p95_ms: float | None
    meets_target: bool | None


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `samples` (milliseconds)."""
    ordered = sorted(samples)
    rank = max(1, round(fraction * len(ordered) + 0.5)) - 1
    return ordered[min(rank, len(ordered) - 1)]


def make_case(
    name: str,
    samples: list[float],
    *,
    target_ms: float | None,
    baseline: list[float] | None = None,
    min_ratio: float | None = 10.0,
) -> Case:
    """A case from its samples; it meets its target when p95 is under the target
    and, with a baseline, it is at least `min_ratio` times faster."""
    p50 = round(statistics.median(samples), 2)
    p95 = round(percentile(samples, 0.95), 2)
    baseline_p95 = round(percentile(baseline, 0.95), 2) if baseline else None
    ratio = round(baseline_p95 / p95, 1) if baseline_p95 and p95 else None
    meets = None
    if target_ms is not None:
        meets = p95 <= target_ms
        if ratio is not None and min_ratio is not None:
            meets = meets and ratio >= min_ratio
    return Case(name, p50, p95, baseline_p95, ratio, target_ms, meets)


def table(cases: list[Case]) -> str:
    header = ["case", "p50 ms", "p95 ms", "admin p95", "ratio", "target", "met"]
    return text_table(
        header,
        [
            [
                case.name,
                cell(case.p50_ms),
                cell(case.p95_ms),
                cell(case.baseline_p95_ms),
                cell(case.ratio, suffix="x"),
                cell(case.target_p95_ms),
                verdict(case.meets_target),
            ]
            for case in cases
        ],
    )


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, the first left-aligned, the rest
    right-aligned, with a rule under the header."""
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            text.ljust(width) if i == 0 else text.rjust(width)
            for i, (text, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def cell(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:g}{suffix}"


def verdict(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


def write_json(path: Path, scale: dict[str, Any], cases: list[Case]) -> None:
    document = {"scale": scale, "cases": [asdict(case) for case in cases]}
    path.write_text(json.dumps(document, indent=2) + "\n")


def writable_file(value: str) -> Path:
    """An argparse type for --output: a file the command can write, checked before
    minutes of measuring rather than after them."""
    path = Path(value)
    if path.is_dir():
        raise ArgumentTypeError(
            f"{value!r} is a folder; name a file in it, such as {path / 'bench.json'}"
        )
    if not path.parent.is_dir():
        raise ArgumentTypeError(f"there is no folder {str(path.parent)!r}")
    # Opened for real, not os.access: root passes every permission check, yet
    # cannot write /proc, a read-only mount or a full disk.
    existed = path.exists()
    try:
        with path.open("a"):
            pass
    except OSError as error:
        raise ArgumentTypeError(
            f"cannot write {value!r}: {(error.strerror or str(error)).lower()}"
        ) from None
    if not existed:
        path.unlink()
    return path
