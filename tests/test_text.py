"""Console text: first sentences, reST to plain text, name suggestions."""

from __future__ import annotations

import pytest

from eigenflow._text import first_sentence, rst_to_text
from eigenflow.core.errors import closest, edit_distance


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("Newton-Schulz (Eq. 2.3) forward. Second.", "Newton-Schulz (Eq. 2.3) forward."),
        ("As in Sec. 3.4 of the thesis. More.", "As in Sec. 3.4 of the thesis."),
        ("Clipped, i.e. floored gaps. More.", "Clipped, i.e. floored gaps."),
        ("Baselines, e.g. Taylor. More.", "Baselines, e.g. Taylor."),
        ("Zhu et al. 2020 metric. More.", "Zhu et al. 2020 metric."),
        ("See Fig. 2.8 here. More.", "See Fig. 2.8 here."),
        ("Uses ``torch.linalg.eigh``. ``x`` is next.", "Uses torch.linalg.eigh."),
        ("Ends (inside. Parentheses) here. Next.", "Ends (inside. Parentheses) here."),
        ("One sentence without a period", "One sentence without a period"),
        ("First para.\n\nSecond para.", "First para."),
        ("Wrapped\n   over lines. Next.", "Wrapped over lines."),
        (None, ""),
    ],
)
def test_first_sentence(doc, expected):
    assert first_sentence(doc) == expected


def test_rst_to_text():
    text = (
        ":class:`~eigenflow.core.Solver`, :func:`the hook <eigenflow.registry.hookspec>`, "
        ":data:`AUTOLOAD`, ``code``, `interpreted`, **bold**, *emphasis*, 2 * 3 * 4, a\\_b"
    )
    assert rst_to_text(text) == (
        "Solver, the hook, AUTOLOAD, code, interpreted, bold, emphasis, 2 * 3 * 4, a_b"
    )


def test_edit_distance():
    assert edit_distance("sdv", "svd") == 1  # one swap
    assert edit_distance("", "abc") == 3
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("same", "same") == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mpa", "mpa-lya"),  # a completion beats a closer-looking name (mtp-lya)
        ("mtp", "mtp-lya"),
        ("sdv", "svd"),
        ("svdd", "svd"),
        ("svd_pade", "svd-pade"),  # distance 1 beats the prefix 'svd'
        ("SVD-PADE", "svd-pade"),
        ("sv", "svd"),  # the shortest completion
        ("alfa", "alpha"),  # two edits in five letters
        ("fvae", "ffvae"),  # a tie at distance 1: the longer common prefix wins
        ("qwerty", None),
    ],
)
def test_closest_ranks_completions_then_edit_distance(name, expected):
    solvers = [
        "mpa-lya",
        "mtp-lya",
        "svd",
        "svd-pade",
        "svd-pi",
        "ns",
        "ns-lya",
        "alpha",
        "vae",
        "ffvae",
    ]
    assert closest(name, solvers) == expected
