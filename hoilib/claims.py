"""The study's claims table: every verdict in the README is regenerated from the results tables, never typed by hand.

    python -m hoilib.claims results [--readme README.md]

reads the tables the notebooks wrote under `results/tables/`, writes `tab_claims` (CSV + Markdown) there, and, with
`--readme`, replaces the README's block between `<!-- claims:start -->` and `<!-- claims:end -->` with the table.
`./run_all.sh` runs it after the default profile's last notebook.

Each claim of the papers is tied to the rows of one table that decide it; the verdicts in those rows come from
`hoilib.stats.verdict` (paired 95% t intervals, or the bootstrap / binomial intervals of the CLIP probe). A claim with
several rows (protocols, ablation rows, sweep values) reports how many rows fall under each verdict and lists the
supported and contradicted ones; the primary comparison lists every row.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import cache, results

START, END = "<!-- claims:start -->", "<!-- claims:end -->"


@dataclass(frozen=True)
class Claim:
    """A paper's claim, where it is tested, and which rows of which table decide it."""

    claim: str
    notebook: str
    table: str
    select: str = ""  # a pandas query on the table ("" = every row)
    primary: bool = False


CLAIMS = (
    Claim("LAIN beats the same CLIP without adapters on the default protocol, Full and Unseen (LAIN Tab. 1): "
          "the primary comparison, per world and pooled", "05", "tab1_primary", primary=True),
    Claim("... and on the other protocols (secondary)", "05", "tab1_main_comparisons",
          "comparison == 'LAIN - w/o adapters' and protocol != 'RF-UC'"),
    Claim("HOICLIP's components (verb classifier, training-free enhancement) improve LAIN (HOICLIP Tab. 2)", "05",
          "tab1_main_comparisons", "comparison == 'HOICLIP components - LAIN'"),
    Claim("What the trained adapters add: LAIN loses when gamma_LA = gamma_IA = 0 at test time", "05",
          "tab1_gamma_zero"),
    Claim("The Locality and the Interaction Adapter each help, together most (LAIN ablation table)", "06",
          "tab2_ablation_comparisons", "comparison.str.endswith('- w/o adapters')"),
    Claim("Visual info, spatial layout, the convolution, IPRM and context extraction all matter (LAIN ablation)", "06",
          "tab2_ablation_comparisons", "comparison.str.endswith('- + LA + IA')"),
    Claim("CLIP judges the whole image, not who does what: the pair's crop beats the whole image (LAIN §1)", "02",
          "tab_clip_probe_differences", "comparison == 'crop - whole image'"),
    Claim("... and not only because the crop enlarges the pair: the in-place masked image beats the whole image", "02",
          "tab_clip_probe_differences", "comparison == 'in-place masked - whole image'"),
    Claim("The locality gap (LAIN - w/o adapters) at each detector quality (LAIN's limitations)", "08",
          "tab6_detection_quality"),
    Claim("The locality gap on test worlds with a weaker or stronger scene shortcut", "08", "tab7_gap_vs_shortcut"),
)
SWEEP_CLAIMS = {"alpha": "alpha = 0.5 is best (HOICLIP Tab. 7)", "topk": "K = 10 is best (HOICLIP Tab. 7)",
                "lambda": "lambda = 2.8 at test is best (official code)"}


def _fmt(r) -> str:
    where = ", ".join(str(r[c]) for c in ("world", "world_seed", "protocol", "subset", "level", "metric")
                      if c in r and pd.notna(r[c]) and str(r[c]) != "")
    if "mean_diff_map" in r:
        m, lo, hi, unit = r["mean_diff_map"], r["ci_low_map"], r["ci_high_map"], "mAP"
    else:
        m, lo, hi, unit = r["diff_pp"], r["ci95_low_pp"], r["ci95_high_pp"], "pp"
    n = f", n = {int(r['n_pairs'])}" if "n_pairs" in r and pd.notna(r["n_pairs"]) else ""
    label = f"{r['comparison']} " if "comparison" in r and not str(where).startswith(str(r["comparison"])) else ""
    return f"{label}({where}): {m:+.2f} [{lo:+.2f}, {hi:+.2f}] {unit}{n}"


def _summarise(rows: pd.DataFrame, list_all: bool) -> tuple[str, str]:
    """(measurement text, verdict text) of the rows deciding one claim."""
    rows = rows[rows["verdict"].isin(("supported", "contradicted", "inconclusive"))]
    if rows.empty:
        return "no rows in the table", "not measured"
    counts = rows["verdict"].value_counts()
    verdict = ", ".join(f"{k} {int(counts.get(k, 0))}" for k in ("supported", "contradicted", "inconclusive")
                        if counts.get(k, 0)) + f" of {len(rows)}"
    shown = rows if list_all else rows[rows["verdict"] != "inconclusive"]
    parts = [f"{r['verdict']}: {_fmt(r)}" for _, r in shown.iterrows()]
    if not list_all and len(shown) < len(rows):
        parts.append(f"{len(rows) - len(shown)} inconclusive")
    return "; ".join(parts), verdict


def claims_table(results_dir) -> pd.DataFrame:
    """One row per claim: claim, notebook, table, measurement, verdict (counts of the rows' verdicts)."""
    tables = Path(results_dir) / "tables"
    out = []

    def add(claim, notebook, name, rows, list_all):
        measurement, verdict = _summarise(rows, list_all) if rows is not None else ("table missing", "not measured")
        out.append(dict(claim=claim, notebook=notebook, table=name, measurement=measurement, verdict=verdict))

    for c in CLAIMS:
        path = tables / f"{c.table}.csv"
        rows = None
        if path.is_file():
            t = pd.read_csv(path)
            rows = t.query(c.select, engine="python") if c.select else t
        add(c.claim, c.notebook, c.table, rows, c.primary)
    for name, claim in SWEEP_CLAIMS.items():
        path = tables / f"tab3_sweep_{name}.csv"
        rows = None
        if path.is_file():
            t = pd.read_csv(path)
            rows = pd.DataFrame(dict(comparison=f"{name} " + t[name].map("{:g}".format) + " - paper's value",
                                     metric="full", mean_diff_map=t["full_diff_map"], ci_low_map=t["full_ci_low_map"],
                                     ci_high_map=t["full_ci_high_map"], verdict=t["full_verdict"]))
        add(claim, "07", f"tab3_sweep_{name}", rows, False)
    return pd.DataFrame(out, columns=["claim", "notebook", "table", "measurement", "verdict"])


def write_readme_block(readme, markdown: str) -> bool:
    """Replace the README's claims block (between START and END) with `markdown`; False when the markers are absent."""
    readme = Path(readme)
    text = readme.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        return False
    cache.atomic_write_text(readme, pattern.sub(lambda _: f"{START}\n{markdown.strip()}\n{END}", text))
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hoilib.claims", description=__doc__.split("\n")[0])
    ap.add_argument("results", help="the results folder (tables/ inside)")
    ap.add_argument("--readme", default="", help="README to update between the claims markers")
    a = ap.parse_args(argv)
    table = claims_table(a.results)
    results.write_table(table, "tab_claims", a.results,
                        caption="The papers' claims and what the study measured, regenerated from the results "
                                "tables (verdicts by hoilib.stats: 95% intervals, paired by seed).")
    if a.readme and not write_readme_block(a.readme, table.to_markdown(index=False)):
        print(f"claims: {a.readme} has no {START} ... {END} block", file=sys.stderr)
        return 2
    print(f"claims: {len(table)} claims from {a.results}/tables" + (f", written into {a.readme}" if a.readme else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
