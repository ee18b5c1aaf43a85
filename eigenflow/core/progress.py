"""Progress reporting for long runs: a tqdm bar on a terminal when tqdm is installed, plain
lines otherwise; always on standard error, so standard output keeps only results."""

from __future__ import annotations

import sys
from typing import Any, TextIO

__all__ = ["Progress"]


class Progress:
    """Progress of ``total`` steps named ``desc``.

    On a terminal with ``tqdm`` installed it draws a bar; otherwise it prints a line at
    every fifth of the run (``desc: step 30/150 loss 0.6931``); with ``quiet`` it prints
    nothing. Use as a context manager and call :meth:`update` once per step.

    Parameters
    ----------
    total
        Number of steps.
    desc
        Label printed before the bar or each line.
    quiet
        Print nothing.
    stream
        Where to write (default: ``sys.stderr``, read when the object is made).
    bar
        Force (``True``) or refuse (``False``) the tqdm bar; default: a bar when ``stream`` is
        a terminal and tqdm can be imported.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        bar: bool | None = None,
    ):
        self.total = int(total)
        self.desc = desc
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.count = 0
        self._every = max(1, self.total // 5)
        self._bar: Any = None
        if quiet:
            return
        if bar is None:
            bar = bool(getattr(self.stream, "isatty", lambda: False)())
        if bar:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(
                    total=self.total, desc=desc, file=self.stream, leave=True, dynamic_ncols=True
                )

    def update(self, n: int = 1, **values: float) -> None:
        """Advance by ``n`` steps and show ``values`` (e.g. ``loss=0.7``) beside the count."""
        self.count += n
        if self.quiet:
            return
        shown = " ".join(f"{k} {v:.4f}" for k, v in values.items())
        if self._bar is not None:
            self._bar.update(n)
            if values:
                self._bar.set_postfix_str(shown, refresh=False)
            return
        if self.count % self._every == 0 or self.count == self.total:
            line = f"{self.desc}: step {self.count}/{self.total}"
            print(f"{line} {shown}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        """Finish the bar (plain lines need no closing)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
