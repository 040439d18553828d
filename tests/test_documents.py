"""The measurement documents are rendered from the results files, and only from them."""
import json
from pathlib import Path

import pytest

from pipeline import documents

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("document", sorted(documents.DOCUMENTS))
def test_the_committed_document_is_what_its_template_renders(document):
    committed = (ROOT / document).read_text()
    assert committed == documents.render(documents.DOCUMENTS[document]), (
        f"{document} differs from docs/templates/{documents.DOCUMENTS[document]} rendered over "
        f"benchmarks/results/: run `doit docs` (and edit the template, not the document)")


@pytest.fixture
def results(tmp_path, monkeypatch):
    """A results folder and a templates folder of our own."""
    (tmp_path / "results").mkdir()
    (tmp_path / "templates").mkdir()
    monkeypatch.setattr(documents, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(documents, "TEMPLATES", tmp_path / "templates")
    (tmp_path / "results" / "bench-cpu.json").write_text(json.dumps({
        "commit": "abc1234", "torch": "2.13.0+cpu", "date": "2026-12-01", "total": 1234.5,
        "rows": [{"size": 512, "share": 0.8125, "diff": -0.7812},
                 {"size": 768, "share": 0.03125, "diff": 0.25},
                 {"size": 768, "share": 0.5, "diff": 0.0}]}))
    (tmp_path / "results" / "bench-cpu.csv").write_text("size,seconds,name\n256,1.5,a\n512,3,b\n")
    return tmp_path


def render(tmp: Path, text: str) -> str:
    (tmp / "templates" / "t.md.j2").write_text(text)
    return documents.render("t.md.j2").split("\n", 1)[1]  # without the header line


def test_a_template_renders_figures_from_the_file(results):
    text = render(results, '{% set r = result("bench-cpu") %}{% set a = row(r, size=512) %}'
                           '{{ a.share | pct }}% ({{ a.diff | signed_pct }} points), '
                           '{{ r.total | num }} s, {{ r.total | num(0) }}, {{ stamp(r) }}; '
                           '{{ row(table("bench-cpu"), name="b").seconds }}')
    assert text == "81% (−78 points), 1,234.5 s, 1,234, commit `abc1234`, torch 2.13.0+cpu, " \
                   "2026-12-01; 3"
    # a change in the file is a change in the document
    data = json.loads((results / "results" / "bench-cpu.json").read_text())
    data["rows"][0]["share"] = 0.5
    (results / "results" / "bench-cpu.json").write_text(json.dumps(data))
    assert render(results, '{{ row(result("bench-cpu"), size=512).share | pct }}') == "50"


def test_a_file_without_a_commit_says_so(results):
    (results / "results" / "old.json").write_text(json.dumps({"torch": "2.11", "date": "d"}))
    assert render(results, '{{ stamp(result("old")) }}') == "commit not recorded, torch 2.11, d"


@pytest.mark.parametrize("template, says", [
    ('{{ result("missing").x }}', "benchmarks/results/missing.json does not exist"),
    ('{{ table("missing") }}', "benchmarks/results/missing.csv does not exist"),
    ('{{ result("bench-cpu").no_such_field }}', "no_such_field"),
    ('{{ row(result("bench-cpu"), size=768).share }}', "2 rows match {'size': 768}"),
    ('{{ row(result("bench-cpu"), size=1024).share }}', "0 rows match {'size': 1024}"),
])
def test_a_template_asking_for_what_the_files_lack_stops_with_one_line(results, template, says):
    with pytest.raises(documents.DocumentError) as err:
        render(results, template)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_doit_docs_renders_both_documents_and_names_a_bad_template(tmp_path):
    """`doit docs` in a copy of the project: the documents come back byte for byte; a template
    that asks for a missing field fails the task with one line naming it."""
    from conftest import copy_project, doit

    copy = copy_project(tmp_path)
    for document in documents.DOCUMENTS:
        (copy / document).unlink()
    doit(copy, "docs")
    for document in documents.DOCUMENTS:
        assert (copy / document).read_text() == (ROOT / document).read_text()
    template = copy / "docs/templates" / documents.DOCUMENTS["benchmarks/README.md"]
    template.write_text(template.read_text() + "{{ result('cpu_path-peak-cpu').no_such_field }}\n")
    run = doit(copy, "docs", check=False)
    assert run.returncode != 0
    assert "no_such_field" in run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
