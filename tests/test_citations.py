"""Docstrings and docs cite the source documents by the keys of docs/bibliography.rst."""

from __future__ import annotations

import re

from helpers import ROOT

# the seed documents' authors, named only next to their key ("001 (Ramesh et al.)")
_AUTHOR_OF_KEY = {"000": "Song 2023", "001": "Ramesh", "002": "Zietlow", "003": "Ponce"}


def _texts() -> dict[str, str]:
    files = [*sorted((ROOT / "eigenflow").rglob("*.py")), *sorted((ROOT / "docs").glob("*.rst"))]
    return {
        str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
        for path in files
        if path.name != "bibliography.rst"
    }


def _bibliography_keys() -> set[str]:
    text = (ROOT / "docs" / "bibliography.rst").read_text(encoding="utf-8")
    return set(re.findall(r"^   \* - ``(\d{3})``$", text, flags=re.MULTILINE))


def test_bibliography_defines_the_five_source_documents():
    assert _bibliography_keys() == {"000", "001", "002", "003", "004"}


def test_every_cited_key_is_in_the_bibliography():
    keys = _bibliography_keys()
    unknown = [
        f"{name}: {match.group(0)!r}"
        for name, text in _texts().items()
        for match in re.finditer(r"\b(?:[Tt]hesis|[Ss]eed) (\d{3})\b", text)
        if match.group(1) not in keys
    ]
    assert unknown == []


def test_source_documents_are_cited_with_their_key():
    """An author of a source document appears only right after its key, never alone
    ("Zietlow (2022), Sec. 3.2.7" says nothing about which file holds Sec. 3.2.7)."""
    missing_key = []
    for name, text in _texts().items():
        for key, author in _AUTHOR_OF_KEY.items():
            for match in re.finditer(re.escape(author), text):
                before = text[max(0, match.start() - 12) : match.start()]
                if key not in before:
                    line = text.count("\n", 0, match.start()) + 1
                    missing_key.append(f"{name}:{line}: {author} without key {key}")
    assert missing_key == []


_AUTHOR_YEAR = re.compile(r"\b([A-Z][a-zA-Z-]+)(?: et al\.| and [A-Z][a-zA-Z-]+)? \(?(\d{4})\b")


def _bibliography_entries() -> list[str]:
    """Each entry of docs/bibliography.rst: a bullet of the other works or a row of the
    table of source documents."""
    text = (ROOT / "docs" / "bibliography.rst").read_text(encoding="utf-8")
    return re.split(r"\n(?=\* |   \* - )", text)


def test_works_cited_by_author_and_year_in_plugin_sources_are_in_the_bibliography():
    """``source`` of every registered component (``"Kim and Mnih 2018 (FactorVAE); seed 004
    Tables 1-2"``): each author-year citation has an entry with that author and year."""
    import eigenflow as ef

    entries = _bibliography_entries()
    missing = []
    for kind, names in ef.list().items():
        for name in names:
            source = getattr(ef.get(kind, name), "source", "") or ""
            for author, year in _AUTHOR_YEAR.findall(source):
                if not any(author in entry and year in entry for entry in entries):
                    missing.append(f"{kind} {name}: {author} {year}")
    assert missing == []


def test_the_ffvae_baselines_cite_their_papers():
    import eigenflow as ef

    assert "Kim and Mnih 2018" in ef.get("model", "factor-vae").source
    assert "Klindt et al. 2021" in ef.get("model", "slow-vae").source
    for cited in ("Kim and Mnih (2018)", "Klindt, Schott", "Keller and Welling (2021)"):
        assert cited in (ROOT / "docs" / "bibliography.rst").read_text(encoding="utf-8")
