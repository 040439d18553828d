"""Render the project's measurement documents from the committed results files.

`benchmarks/README.md` and `docs/preview-model.md` quote figures measured by the scripts under
`benchmarks/`. They are not written by hand: each is a Jinja2 template under `docs/templates/`
whose numbers are expressions over `benchmarks/results/*.json`, so a number in them cannot drift
from its file. `doit docs` (part of a plain `doit`) renders them; a test renders them again and
requires the committed documents to be exactly that.

What a template can use:

    result("evaluation-32seeds-cpu")         the file's JSON (fields as attributes)
    has_result("train_miniature-cpu-repro")  whether that file exists (a run made at all)
    table("sd15_workload-sd15-cuda")         a CSV file's rows (numbers as numbers)
    row(r, size=768, variant="usual")        the one row of r["rows"] (or of a table) matching
                                             every field
    stamp(r)                                 "commit 1db1e5e, torch 2.13.0+cpu, 2026-12-01"
    x | num(2)                               6,000 / 5,186.50: thousands separated, fixed places
    x | num                                  as stored, thousands separated
    x | pct                                  a fraction as a whole percentage: 0.8125 -> 81
    x | pct(1)                               ... with one decimal: 81.2
    x | signed_pct                           a difference in points: -0.78 -> −78

A field, file or row that does not exist stops the render with one line naming it (the
template's name, and the file or the field).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TEMPLATES = ROOT / "docs" / "templates"
# rendered document -> its template
DOCUMENTS = {"benchmarks/README.md": "benchmarks.md.j2",
             "docs/preview-model.md": "preview-model.md.j2"}
HEADER = ("<!-- Rendered by `doit docs` from docs/templates/{template} and benchmarks/results/; "
          "edit the template, not this file. -->\n")


class DocumentError(ValueError):
    """A template asks for a results file, field or row that does not exist."""


def result(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise DocumentError(f"benchmarks/results/{name}.json does not exist; run the benchmark "
                            f"that writes it or correct the name in the template")
    data = json.loads(path.read_text())
    data.setdefault("_file", path.name)
    return data


def has_result(name: str) -> bool:
    """Whether benchmarks/results/<name>.json exists (for a sentence that depends on a run
    having been made at all)."""
    return (RESULTS / f"{name}.json").is_file()


def table(name: str) -> list[dict]:
    import csv

    path = RESULTS / f"{name}.csv"
    if not path.is_file():
        raise DocumentError(f"benchmarks/results/{name}.csv does not exist; run the benchmark "
                            f"that writes it or correct the name in the template")

    def value(text: str):
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text

    with path.open(newline="") as f:
        return [{k: value(v) for k, v in r.items()} for r in csv.DictReader(f)]


def row(data: dict | list, **match) -> dict:
    rows = data if isinstance(data, list) else data.get("rows", [])
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    if len(found) != 1:
        name = "a table" if isinstance(data, list) else data.get("_file", "a result")
        raise DocumentError(f"{name}: {len(found)} rows match {match}, not exactly one")
    return found[0]


def stamp(data: dict) -> str:
    """Where a file's figures come from: commit, torch version and date (a file written before
    the benchmarks recorded their commit says so)."""
    commit = data.get("commit") or "commit not recorded"
    commit = commit if commit.startswith("commit") else f"commit `{commit}`"
    return f"{commit}, torch {data.get('torch', 'not recorded')}, {data.get('date', 'undated')}"


def num(value, places: int | None = None) -> str:
    return f"{value:,}" if places is None else f"{value:,.{places}f}"


def pct(value: float, places: int = 0) -> str:
    return f"{value * 100:.{places}f}"


def signed_pct(value: float, places: int = 0) -> str:
    text = pct(value, places)
    return text.replace("-", "−") if value < 0 else text


def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    env.globals.update(result=result, has_result=has_result, table=table, row=row, stamp=stamp)
    env.filters.update(num=num, pct=pct, signed_pct=signed_pct, ln=math.log)
    return env


def render(template: str) -> str:
    import jinja2

    try:
        body = environment().get_template(template).render()
    except jinja2.UndefinedError as err:  # a field the file does not have
        raise DocumentError(f"docs/templates/{template}: {err}") from None
    return HEADER.format(template=template) + body


def run(*documents: str) -> None:
    """Render the named documents (all when none is named), each written atomically."""
    from pipeline.files import atomic_write

    for document in documents or tuple(DOCUMENTS):
        atomic_write(ROOT / document, render(DOCUMENTS[document]).encode())
