"""The committed documents in derivations/ are what the registry writes now."""

from pathlib import Path

from featfate_sym import registry
from featfate_sym.derive import write_docs

ROOT = Path(__file__).resolve().parents[1]


def test_documents_up_to_date(tmp_path):
    written = write_docs(tmp_path)
    families = {f"{f}.md" for f in registry.FAMILIES if any(r.family == f for r in registry.results())}
    assert {p.name for p in written} == families | {"corrections.md"}  # featfate_sym/corrections.py
    for path in written:
        committed = ROOT / "derivations" / path.name
        assert committed.exists(), f"{committed} missing: run python -m featfate_sym.derive --write-docs derivations"
        assert committed.read_text() == path.read_text(), (
            f"{committed.name} is stale: run python -m featfate_sym.derive --write-docs derivations"
        )


def test_one_document_per_family_with_every_result():
    for family in ("deep_linear", "scratch", "linear_transfer", "fine_tuning", "finite_source", "distances"):
        text = (ROOT / "derivations" / f"{family}.md").read_text()
        for r in registry.results():
            if r.family == family:
                assert f"`{r.key}`" in text


def test_family_module_and_document_share_one_name():
    """A family is one theory module and one document of the same name; key prefixes
    (``lt.``, ``ft.``, ``dln.``, ...) name the quantity and stay as they are (stable keys)."""
    for r in registry.results():
        assert r.builder.__module__ == f"featfate_sym.theory.{r.family}", r.key
        assert (ROOT / "derivations" / f"{r.family}.md").exists(), r.key
