"""The claims table is computed from the results tables: verdict counts, listed rows, README block."""
import pandas as pd
import pytest

from hoilib import claims


def _comparison_rows(verdicts, comparison="LAIN - w/o adapters", **extra):
    n = len(verdicts)
    return pd.DataFrame(dict(comparison=[comparison] * n, protocol=["RF-UC"] * n,
                             metric=["full", "unseen", "rare", "non_rare"][:n], n_pairs=[8] * n,
                             mean_diff_map=[1.5, -0.25, 0.1, -2.0][:n], ci_low_map=[0.5, -1.0, -0.4, -3.0][:n],
                             ci_high_map=[2.5, 0.5, 0.6, -1.0][:n], verdict=verdicts, **extra))


@pytest.fixture()
def results_dir(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    _comparison_rows(["supported", "inconclusive"], world=["pooled", "pooled"]).to_csv(tables / "tab1_primary.csv",
                                                                                       index=False)
    main = pd.concat([_comparison_rows(["supported", "contradicted", "inconclusive"]),
                      _comparison_rows(["inconclusive"], comparison="HOICLIP components - LAIN")])
    main.loc[main.index[:1], "protocol"] = "RF-UC"  # excluded from the secondary claim
    main.loc[main.index[1:3], "protocol"] = "NF-UC"
    main.to_csv(tables / "tab1_main_comparisons.csv", index=False)
    pd.DataFrame(dict(alpha=[0.0, 0.5, 1.0], full_diff_map=[-1.0, float("nan"), 0.2],
                      full_ci_low_map=[-1.5, float("nan"), -0.1], full_ci_high_map=[-0.5, float("nan"), 0.5],
                      full_verdict=["supported", "(the paper's value)", "inconclusive"])
                 ).to_csv(tables / "tab3_sweep_alpha.csv", index=False)
    return tmp_path


def test_claims_table_counts_and_lists_the_deciding_rows(results_dir):
    t = claims.claims_table(results_dir).set_index("table", drop=False)
    assert len(t) == len(claims.CLAIMS) + len(claims.SWEEP_CLAIMS)
    primary = t.loc["tab1_primary"]
    assert primary["verdict"] == "supported 1, inconclusive 1 of 2"
    # the primary claim lists every row, inconclusive ones too, with interval and number of pairs
    assert "supported: LAIN - w/o adapters (pooled, RF-UC, full): +1.50 [+0.50, +2.50] mAP, n = 8" in primary["measurement"]
    assert "inconclusive: LAIN - w/o adapters (pooled, RF-UC, unseen): -0.25 [-1.00, +0.50] mAP" in primary["measurement"]
    secondary = t[t["claim"].str.startswith("... and on the other protocols")].iloc[0]
    assert secondary["verdict"] == "contradicted 1, inconclusive 1 of 2"  # the RF-UC row is the primary's
    assert "1 inconclusive" in secondary["measurement"] and "contradicted: " in secondary["measurement"]
    hoiclip = t[t["claim"].str.startswith("HOICLIP's components")].iloc[0]
    assert hoiclip["verdict"] == "inconclusive 1 of 1"
    alpha = t.loc["tab3_sweep_alpha"]
    assert alpha["verdict"] == "supported 1, inconclusive 1 of 2"  # the paper's own value is not a comparison
    assert "alpha 0 - paper's value (full): -1.00 [-1.50, -0.50] mAP" in alpha["measurement"]
    assert t.loc["tab6_detection_quality", "verdict"] == "not measured"
    assert t.loc["tab6_detection_quality", "measurement"] == "table missing"


def test_readme_block_is_replaced_and_missing_markers_are_an_error(results_dir, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Study\n\n{claims.START}\nold text\n{claims.END}\n\nafter\n")
    assert claims.main([str(results_dir), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old text" not in text and text.endswith("\n\nafter\n")
    block = text.split(claims.START)[1].split(claims.END)[0]
    assert "| claim" in block and "supported 1, inconclusive 1 of 2" in block
    assert (results_dir / "tables" / "tab_claims.csv").is_file() and (results_dir / "tables" / "tab_claims.md").is_file()
    # running again leaves one block
    assert claims.main([str(results_dir), "--readme", str(readme)]) == 0
    assert readme.read_text().count(claims.START) == 1
    readme.write_text("# no markers\n")
    assert claims.main([str(results_dir), "--readme", str(readme)]) == 2
    assert "has no <!-- claims:start -->" in capsys.readouterr().err
