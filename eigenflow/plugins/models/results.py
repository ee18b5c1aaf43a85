"""The ``ffvae-digits`` result table: metrics summarised over seeds and printed as Markdown
(thesis 000, Sec. 4.6.3). Used by the pipeline and by ``benchmarks/ffvae_digits_runs.py``,
which merges runs made in separate processes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["results_markdown", "summarise_runs"]


def summarise_runs(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of each model's metrics, and the target ratios.

    Parameters
    ----------
    runs
        ``{model name: [one metrics dict per seed (key "seed" and metric values)]}``, as the
        ``ffvae-digits`` pipeline writes under ``"runs"`` in its ``metrics.json``.

    Returns
    -------
    dict
        ``{model name: {metric: {"mean": float, "std": float}}}``; with both ``vae`` and
        ``ffvae`` present, also ``"targets"``: the equivariance-error ratio ffvae/vae, the
        log-likelihood differences and, with ``ffvae-weak``, its ratio to ``ffvae``.
    """
    table: dict[str, Any] = {}
    for name, rows in runs.items():
        if not rows:
            continue
        keys = [k for k in rows[0] if k != "seed"]
        table[name] = {
            k: {
                "mean": float(np.mean([r[k] for r in rows])),
                "std": float(np.std([r[k] for r in rows])),
            }
            for k in keys
        }
    if "vae" in table and "ffvae" in table:
        eq = {n: table[n]["equivariance_error"]["mean"] for n in table}
        ll = {n: table[n]["log_likelihood"]["mean"] for n in table}
        table["targets"] = {
            "ffvae_over_vae_equivariance": eq["ffvae"] / eq["vae"],
            "ffvae_ll_minus_vae_ll": ll["ffvae"] - ll["vae"],
        }
        seq = {n: table[n].get("log_likelihood_sequence", {}).get("mean") for n in table}
        if seq["vae"] is not None and seq["ffvae"] is not None:
            table["targets"]["ffvae_sequence_ll_minus_vae"] = seq["ffvae"] - seq["vae"]
        if "ffvae-weak" in eq:
            table["targets"]["weak_over_supervised_equivariance"] = eq["ffvae-weak"] / eq["ffvae"]
    return table


def results_markdown(table: dict[str, Any]) -> str:
    """The result table of :func:`summarise_runs` as Markdown (one row per model, mean +- std
    over seeds), followed by the target ratios."""
    lines = [
        "| model | equivariance error | log p(x_t) per frame (IW) | log p(x_0..T) per sequence "
        "(IW) | test -ELBO-type loss |",
        "|---|---|---|---|---|",
    ]
    for name, row in table.items():
        if name == "targets":
            continue

        def fmt(key: str, row: dict = row) -> str:
            return f"{row[key]['mean']:.2f} +- {row[key]['std']:.2f}" if key in row else "-"

        lines.append(
            f"| {name} | {fmt('equivariance_error')} | {fmt('log_likelihood')} | "
            f"{fmt('log_likelihood_sequence')} | {fmt('test_loss')} |"
        )
    for key, value in table.get("targets", {}).items():
        lines.append(f"\n{key}: {value:.3f}")
    return "\n".join(lines) + "\n"
