"""How much of Leap's meta-gradient is the loss term, read from runs' `tasks.jsonl` (each task's
`meta/path_term_norm`, `meta/loss_term_norm` and `meta/term_cosine`, issue 23's diagnostics).

    python experiments/term_norms.py RUN_DIR [RUN_DIR ...] [--markdown FILE]

Per run: the tasks that recorded terms, the medians of both norms and of their ratio, the loss
term's median and largest share of the squared norm of the task's meta-gradient g = p + l, and
the median cosine of p and l. The share is the additive split <l, g> / |g|^2 =
(|l|^2 + cos |p| |l|) / |g|^2, computed from the norms and the cosine: the path's share
<p, g> / |g|^2 and it sum to 1 (either can be negative when the terms point apart). A run with
the loss term off records no loss norm: 0 here, its cosine n/a.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's leap_ray
from leap_ray.curves import markdown_table  # noqa: E402

COLUMNS = (
    "run",
    "tasks",
    "path term (median)",
    "loss term (median)",
    "loss / path (median)",
    "loss share of the squared norm (median)",
    "loss share (max)",
    "cosine (median)",
)


def run_row(run_dir: Path) -> list[str]:
    path_norms, loss_norms, cosines = [], [], []
    for line in (run_dir / "tasks.jsonl").read_text().splitlines():
        terms = json.loads(line).get("terms") or {}
        if "meta/path_term_norm" in terms:
            path_norms.append(terms["meta/path_term_norm"])
            loss_norms.append(terms.get("meta/loss_term_norm", 0.0))  # absent: loss term off
            cosines.append(terms.get("meta/term_cosine", 0.0))
    if not path_norms:
        return [run_dir.name, "0", *("n/a",) * (len(COLUMNS) - 2)]
    p, q, c = np.array(path_norms), np.array(loss_norms), np.nan_to_num(np.array(cosines))
    total = p**2 + q**2 + 2 * c * p * q  # |p + l|^2
    share = np.divide(q**2 + c * p * q, total, out=np.zeros_like(total), where=total > 0)
    return [
        run_dir.name,
        str(len(p)),
        f"{np.median(p):.3g}",
        f"{np.median(q):.3g}",
        f"{np.median(np.divide(q, p, out=np.zeros_like(p), where=p > 0)):.3g}",
        f"{np.median(share):.2g}",
        f"{share.max():.2g}",
        f"{np.median(c):.2f}" if q.any() else "n/a",
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "tasks.jsonl").is_file()]
    if missing:
        parser.error(f"no tasks.jsonl in {', '.join(missing)}")
    rows = [dict(zip(COLUMNS, run_row(r), strict=True)) for r in args.runs]
    text = markdown_table(rows) + "\n"
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
