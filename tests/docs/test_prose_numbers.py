"""Every measured-looking number in a notebook's prose is one its cells print.

Issue 14: "no prose number differs from the output below it". A decimal (35.3, 0.139) or a
percentage (12 %, 99.8%) in a markdown cell must appear in the notebook's code: in an
output (what a cell printed) or in a source (a parameter the code sets). The few numbers
that are definitions or quotations rather than measurements are listed below with why.
Integers without a percent sign (step counts, years, 8×8) are not checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# a decimal or a percentage, not part of a longer token (x_0.5, 1e-4, 10⁻⁹, v1.2.3)
NUMBER = re.compile(r"(?<![\w.^⁻·])(\d+\.\d+|\d+(?:\.\d+)?\s?%)(?![\w.]*\d)")
NOT_MEASURED = {
    ("03_clipping", "99.5"): "the dynamic-thresholding percentile, a parameter (p = 0.995)",
    ("04_fewer_steps", "20%"): "the definition of a noticeable change, not a measurement",
    ("06_batching_and_speed", "1.5"): "quoted from the chapter's speed table (1.5–2×)",
}


def _code_text(cells: list[dict]) -> str:
    parts = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        parts.append("".join(cell["source"]))
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            data = out.get("data", {})
            parts += ["".join(data.get(k, "")) for k in ("text/plain", "text/markdown")]
    return "\n".join(parts).replace(" %", "%")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_prose_numbers_are_printed_by_the_notebook(path):
    cells = json.loads(path.read_text())["cells"]
    code = _code_text(cells)
    missing = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        for match in NUMBER.finditer(text):
            token = match.group(1).replace(" ", "")
            if token not in code and (path.stem, token) not in NOT_MEASURED:
                context = text[max(0, match.start() - 40) : match.end() + 10].replace("\n", " ")
                missing.append(f"cell {index}: {token!r} in …{context}…")
    assert not missing, (
        f"{path.name}: prose numbers that no cell prints (print them, format the prose from "
        "them, or list them in NOT_MEASURED with a reason):\n" + "\n".join(missing)
    )


def test_the_exemptions_are_still_needed():
    texts = {p.stem: p.read_text() for p in NOTEBOOKS}
    for (stem, token), why in NOT_MEASURED.items():
        assert stem in texts and token.replace("%", "") in texts[stem], (stem, token, why)
