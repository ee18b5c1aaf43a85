"""Plain-text rendering of docstrings for the console: reST markup removed, first sentences
cut at a real sentence end (not at ``Eq.``, ``Sec.``, ``i.e.``, ...)."""

from __future__ import annotations

import re

__all__ = ["ABBREVIATIONS", "first_sentence", "rst_to_text"]

#: Words that end with a period without ending a sentence (compared without the period,
#: case-insensitively).
ABBREVIATIONS = frozenset(
    {
        "al",
        "alg",
        "algs",
        "approx",
        "cf",
        "ch",
        "chap",
        "def",
        "dr",
        "e.g",
        "eg",
        "eq",
        "eqs",
        "etc",
        "fig",
        "figs",
        "i.e",
        "ie",
        "no",
        "nos",
        "prof",
        "ref",
        "refs",
        "resp",
        "sec",
        "secs",
        "sect",
        "tab",
        "thm",
        "viz",
        "vol",
        "vs",
    }
)

# :role:`title <target>` -> title; :role:`~a.b.c` -> c; :role:`x` -> x
_ROLE_TITLE = re.compile(r":[\w:.-]+:`([^`<]*?)\s*<[^`>]*>`")
_ROLE_TILDE = re.compile(r":[\w:.-]+:`~(?:[\w.]*\.)?([^`.]+)`")
_ROLE = re.compile(r":[\w:.-]+:`([^`]*)`")
_LITERAL = re.compile(r"``(.+?)``")
_INTERPRETED = re.compile(r"`([^`]+)`_{0,2}")
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*])\*(\S(?:.*?\S)?)\*(?![\w*])")
_ESCAPE = re.compile(r"\\(.)")


def rst_to_text(text: str) -> str:
    """``text`` with inline reStructuredText markup (roles, literals, emphasis, escapes)
    replaced by its plain content.

    Parameters
    ----------
    text
        A fragment of reST, typically one paragraph of a docstring.

    Returns
    -------
    str
        The same text without markup: ``:class:`~a.B``` becomes ``B``, ````x```` becomes
        ``x``, ``**b**`` becomes ``b``.
    """
    text = _ROLE_TITLE.sub(r"\1", text)
    text = _ROLE_TILDE.sub(r"\1", text)
    text = _ROLE.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _INTERPRETED.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    return _ESCAPE.sub(r"\1", text)


def _ends_sentence(text: str, i: int) -> bool:
    """Whether the ``.``, ``!`` or ``?`` at ``text[i]`` ends a sentence."""
    rest = text[i + 1 :]
    if rest and not rest[0].isspace():
        return False
    following = rest.lstrip()
    if following and not (following[0].isupper() or following[0] in "\"'([`:"):
        return False  # "e.g. the", "Eq. 2.3", "et al. 2020"
    if text[i] != ".":
        return True
    word = re.search(r"([\w.]+)$", text[:i])
    if word is None:
        return True
    token = word.group(1).lower()
    if token in ABBREVIATIONS or token.rstrip(".") in ABBREVIATIONS:
        return False
    # a single capital letter is an initial ("J. Smith"), not a sentence
    return not (len(token) == 1 and text[i - 1].isupper())


def first_sentence(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph, on one line, as plain text.

    Parameters
    ----------
    doc
        A docstring (``None`` gives an empty string).

    Returns
    -------
    str
        The text up to the first sentence end outside parentheses, with reST markup removed;
        the whole first paragraph when it has a single sentence.
    """
    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    depth = 0
    for i, char in enumerate(text):  # on the reST, so a sentence may start with a literal
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char in ".!?" and depth == 0 and _ends_sentence(text, i):
            return rst_to_text(text[: i + 1])
    return rst_to_text(text)
