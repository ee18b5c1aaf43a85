"""Archive the 6000-step ``ffvae-digits`` table of 2026-11-30 and generate its docs table.

``benchmarks/results/ffvae-digits-cpu.json`` holds the metrics of nine training runs (3 seeds
x vae / supervised ffvae / weakly supervised ffvae, 6000 steps on 8000 sequences, convolutional
networks): about 90 minutes on two CPU cores, too long to re-make with every change of the
code it depends on. This script marks it as an archived measurement
(:func:`eigenflow.bench.provenance.archive_record`: the fingerprint of its code taken at the
commit that stored it, so the freshness test reports it as archived and says whether that code
has changed since, instead of calling it fresh) and writes ``docs/generated/ffvae_digits.inc``
from the stored summary. Re-measure with the command in the record and re-run this script.

    python benchmarks/archive_ffvae_digits.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eigenflow.bench.provenance import archive_record, list_table, write_generated

SCRIPT = "benchmarks/archive_ffvae_digits.py"
RESULT = Path("benchmarks/results/ffvae-digits-cpu.json")
#: the commit that stored the run (git log of the result file) and what the run imported then
COMMIT = "2e6088219c0e22c71cb77018329dfef65e2beaab"
DEPENDENCIES = (
    "benchmarks/ffvae_digits_runs.py",
    "eigenflow.core",
    "eigenflow.plugins.datasets",
    "eigenflow.plugins.models",
    "eigenflow.plugins.gen_metrics",
    "eigenflow.engine",
)
SETTINGS = {
    "seeds": [0, 1, 2],
    "dataset": "digits-sequences, 8000 training sequences of T + 1 = 10 frames",
    "steps": 6000,
    "latent_dim": 16,
    "networks": "convolutional",
    "flow_kl": "increment",
    "weak": {"k_amortisation": 10, "k_inference": "responsibilities"},
    "test": "200 sequences, 50 importance samples",
}
#: rows of the docs table: (summary key, label)
ROWS = (
    ("vae", "``vae`` (update set to 0)"),
    ("ffvae", "``ffvae`` (supervised)"),
    ("ffvae-weak", "``ffvae`` (weak)"),
)
COLUMNS = (
    ("equivariance_error", "equivariance error (Eq. 4.15)"),
    ("equivariance_error[rotation]", "rotation"),
    ("equivariance_error[scaling]", "scaling"),
    ("equivariance_error[colouring]", "colouring"),
    ("log_likelihood", "``log p(x_t)`` per frame"),
    ("log_likelihood_sequence", "``log p(x_0..T)`` per sequence"),
)


def rst(summary: dict, prov: dict, command: str) -> str:
    """The table of the stored summary: mean +- standard deviation over the seeds."""
    lines = [
        f"Archived measurement: {prov['device']}, {prov['date']}, ``{command}`` at commit "
        f"``{prov['commit'][:12]}``. It was not re-measured since and **may not reflect the "
        "current code**; ``tests/test_provenance.py`` reports it as archived and says whether "
        "the code it depends on has changed since that commit.",
        "",
    ]
    body = [
        [label, *(mean_std(summary[key][column]) for column, _ in COLUMNS)] for key, label in ROWS
    ]
    lines.append(list_table(["model", *(title for _, title in COLUMNS)], body))
    return "\n".join(lines)


def mean_std(cell: dict) -> str:
    """``mean +- std`` of one summary cell, one decimal."""
    return f"{cell['mean']:.1f} +- {cell['std']:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=Path("docs/generated/ffvae_digits.inc"))
    args = parser.parse_args(argv)
    stored = json.loads(RESULT.read_text())
    stored.pop("provenance", None)
    prov = archive_record(
        "benchmarks/ffvae_digits_runs.py",
        commit=COMMIT,
        date=stored["date"],
        device="CPU, 2 cores, one thread per run, two runs at a time",
        files=[RESULT.name],
        config={**SETTINGS, "command": stored["command"], "archived_by": SCRIPT},
        dependencies=DEPENDENCIES,
        note="nine CPU training runs of about 90 minutes in all; archived rather than re-made "
        "with every change of the code it depends on. Re-measure with the command in config "
        "and re-run benchmarks/archive_ffvae_digits.py.",
    )
    RESULT.write_text(json.dumps({**stored, "provenance": prov}, indent=2) + "\n")
    write_generated(
        args.docs,
        rst(stored["summary"], prov, stored["command"]),
        script=SCRIPT,
        sources=[RESULT.as_posix()],
    )
    print(f"wrote the provenance of {RESULT} and {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
