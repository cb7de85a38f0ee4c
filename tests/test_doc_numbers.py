"""Every interval the prose quotes from a committed report is that report's.

A passage of README.md or docs/ between `<!-- numbers from REPORT -->` and `<!-- end numbers -->` (REPORT: a
folder of the repository holding the report's summary.md and tables) may quote a number with its interval as
`value [low, high]` only as the report has it: a triple printed in its summary.md, or a row's estimate, low and high
columns in one of its CSVs (`..., x, x_low, x_high` or `..., value, low, high`), to the digits the prose prints
(shares may be printed in percent, KID x 1000). A report regenerated under verdicts that were not rewritten fails
here instead of misleading a reader.
"""

import csv
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PASSAGE = re.compile(r"<!-- numbers from (\S+) -->(.*?)<!-- end numbers -->", re.S)
NUMBER = r"[+-]?\d+(?:\.\d+)?"
TRIPLE = re.compile(rf"({NUMBER})%? \[({NUMBER}), ({NUMBER})\]")
SCALES = (1, 100, 1000)  # as stored; a share in percent; KID x 1e3


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def report_triples(report: Path) -> list[tuple[float, float, float]]:
    """(estimate, low, high) of every interval the report holds: printed in summary.md, or a CSV row's columns."""
    triples = [tuple(map(float, m.groups())) for m in TRIPLE.finditer(_one_line((report / "summary.md").read_text()))]
    for table in sorted(report.glob("*.csv")):
        with table.open(newline="") as f:
            header, *rows = list(csv.reader(f))
        for i, name in enumerate(header[1:-1], start=1):
            following = header[i + 1]
            if (name == "low" or name.endswith("_low")) and (following == "high" or following.endswith("_high")):
                for row in rows:
                    try:
                        triples.append((float(row[i - 1]), float(row[i]), float(row[i + 1])))
                    except ValueError:  # an empty cell: no interval on that row
                        pass
    return triples


def _decimals(printed: str) -> int:
    return len(printed.split(".")[1]) if "." in printed else 0


def quotes(printed: tuple[str, str, str], triple: tuple[float, float, float]) -> bool:
    """Whether ``printed`` is ``triple`` rounded to its digits (half a unit of the last digit, and a hair for a
    summary.md value rounded twice), at one of the scales."""
    return any(all(abs(float(p) - scale * value) <= 0.505 * 10.0 ** -_decimals(p) + 1e-9
                   for p, value in zip(printed, triple, strict=True)) for scale in SCALES)


def unquoted_intervals(passage: str, triples: list[tuple[float, float, float]]) -> list[str]:
    return [m.group(0) for m in TRIPLE.finditer(_one_line(passage))
            if not any(quotes(m.groups(), triple) for triple in triples)]


PASSAGES = [(page, m.group(1), m.group(2)) for page in PAGES for m in PASSAGE.finditer(page.read_text())]


def test_the_report_passages_are_marked():
    marked = {(page.name, report) for page, report, _ in PASSAGES}
    assert {("README.md", "docs/removal/mnist"), ("README.md", "docs/t2i/study"),
            ("removal.md", "docs/removal/mnist")} <= marked


@pytest.mark.parametrize("page, report, passage", PASSAGES,
                         ids=[f"{page.relative_to(ROOT).as_posix()}:{report}" for page, report, _ in PASSAGES])
def test_quoted_intervals_are_the_reports(page, report, passage):
    assert TRIPLE.search(_one_line(passage)), "a marked passage that quotes no interval: remove its markers"
    missing = unquoted_intervals(passage, report_triples(ROOT / report))
    assert not missing, (f"{page.relative_to(ROOT)} quotes intervals that {report} does not hold (regenerated "
                         f"report, verdicts not rewritten?): {missing}")


def test_a_misquoted_interval_is_found(tmp_path):
    (tmp_path / "summary.md").write_text("KL 0.0502 [0.0350,\n0.0756]\n")
    (tmp_path / "intervals.csv").write_text("name,forbidden_share,share_low,share_high\nnp,0.0068,0.00195,0.0127\n")
    triples = report_triples(tmp_path)
    passage = "KL 0.050 [0.035, 0.076], forbidden 0.68% [0.20, 1.27]; stale: 0.68% [0.20, 1.30], 0.06 [0.04, 0.08]"
    assert unquoted_intervals(passage, triples) == ["0.68% [0.20, 1.30]", "0.06 [0.04, 0.08]"]
