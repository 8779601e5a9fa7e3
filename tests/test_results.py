"""Everything written to results/: tables (CSV + Markdown) and manifests."""
import json

import pandas as pd

from hoilib import results


def test_write_table_rounds_and_writes_csv_and_markdown(tmp_path):
    df = pd.DataFrame({"setting": ["a", "b"], "value": [1.23456, 2.0]})
    csv = results.write_table(df, "tab_x", tmp_path, caption="Caption.")
    back = pd.read_csv(csv)
    assert back["value"].tolist() == [1.23, 2.0]
    md = (tmp_path / "tables" / "tab_x.md").read_text()
    assert md.startswith("Caption.") and "| setting" in md and "1.23" in md and "1.2346" not in md


def test_manifest_records_configs_seeds_and_versions(tmp_path):
    path = results.write_manifest(tmp_path / "results", "01_x", "smoke", [0, 1], {"a": {"k": 1}}, "abc")
    d = json.loads(path.read_text())
    assert d["seeds"] == [0, 1] and d["data_hash"] == "abc" and d["configs"] == {"a": {"k": 1}}
    assert d["packages"]["torch"] and d["profile"] == "smoke"
