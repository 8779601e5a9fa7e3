"""The real path end to end at fixture scale: every notebook under papermill with the hicodet-smoke profile.

`hoilib.fixture` builds a HICO-DET-format root (annotation files with the 600-class tables, JPEG images, detection
caches written by `hoilib.detect` with a random DETR-R50) and a random CLIP in OpenAI's file format; the notebooks
then run as `./run_all.sh hicodet-smoke` runs them, from detection caches to the tables. The weights are random, so
no number is checked, only that each notebook runs and writes the files of the README's outputs table that a
HICO-DET run makes, with HICO-DET's 600 classes and the official protocol lists in them.

About 4 minutes on a 2-core CPU (most of it the 30 training runs of notebooks 05-07).
"""
import json
import os
import time
from pathlib import Path

import pandas as pd
import papermill

from hoilib import study
from hoilib.preflight import preflight
from hoilib.fixture import CLIP_ARCH, build_fixture

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PROFILE = "hicodet-smoke"

# Results files of a HICO-DET run, per notebook (README's outputs table without the built-in world's own files:
# its vocabulary, splits, examples and CLIP pretraining). Every notebook also writes manifest/<notebook>.json.
EXPECTED = {
    "01_data_splits": (["tab_splits_hicodet_test"], ["fig_class_frequency_hicodet_test"]),
    "02_clip_pretraining": (["tab_clip_probe", "tab_clip_probe_differences"], []),
    "03_model_construction": (["tab_model_shapes", "tab_model_parameters"],
                              ["fig_model_layout_attention", "fig3a_attention_mask", "fig3a_gamma_training"]),
    "04_training": (["tab4_validation_choices", "tab4_validation_runs", "tab_training_history"],
                    ["fig4_validation", "fig_training_curves"]),
    "05_zero_shot_results": (["tab1_primary", "tab1_primary_runs", "tab1_primary_power", "tab1_main_zero_shot",
                              "tab1_main_zero_shot_runs", "tab1_main_comparisons", "tab1_gamma_zero"],
                             ["fig1_primary", "fig1_main_zero_shot", "fig1_main_comparisons"]),
    "06_ablations": (["tab2_ablations", "tab2_ablations_runs", "tab2_ablation_comparisons", "tab2_paper_gains",
                      "tab2_ablation_power"], ["fig2_ablations"]),
    "07_sweeps": ([f"tab3_sweep_{s}{r}" for s in ("alpha", "topk", "lambda") for r in ("", "_runs")]
                  + ["tab3_sweep_choices"], ["fig3_sweeps"]),
    # 08's detector settings (fig6) and its shortcut sweep (tab7, fig7) need the built-in world; tab6 has the DETR cache's row
    "08_figures": (["tab5_ap_vs_frequency", "tab6_detection_quality"], ["fig4_qualitative", "fig5_ap_vs_frequency"]),
}
# The built-in world's own files: a HICO-DET run neither builds the world nor pretrains its CLIP.
WORLD_ONLY = ["tables/tab_world_vocabulary.csv", "tables/tab_world_versions.csv", "tables/tab_splits_world.csv",
              "tables/tab_clip_pretraining.csv", "tables/tab_clip_probe_sweep.csv", "tables/tab1_clip_per_world.csv",
              "tables/tab7_gap_vs_shortcut.csv",
              "figures/fig_world_examples.png", "figures/fig_world_examples_v1.png",
              "figures/fig_class_frequency_world.png", "figures/fig_clip_caption_pairs.png",
              "figures/fig_clip_pretraining_loss.png", "figures/fig2_probe_vs_bias.png",
              "figures/fig6_detection_quality.png", "figures/fig7_gap_vs_shortcut.png"]
# HICO-DET's official unseen-class counts per protocol (zero_shot_splits.json), and its rare classes.
UNSEEN = {"rf_uc": 120, "nf_uc": 120, "uo": 100, "uv": 84, "uc0": 120, "uc1": 120, "uc2": 120, "uc3": 120,
          "uc4": 120}
RARE = 138


def _run_notebooks(fx, results: Path, cache: Path, executed: Path) -> dict:
    """Execute every notebook; returns {notebook: error text} for those that failed (the others ran through)."""
    params = dict(PROFILE=PROFILE, RESULTS_DIR=str(results), CACHE_DIR=str(cache), HICODET_ROOT=str(fx.root),
                  CLIP_CHECKPOINT=str(fx.clip_weights))
    failures, times = {}, {}
    for nb in NOTEBOOKS:
        t0 = time.time()
        try:
            papermill.execute_notebook(str(nb), str(executed / nb.name), parameters=params, kernel_name="python3",
                                       cwd=str(REPO / "notebooks"), progress_bar=False)
        except papermill.PapermillExecutionError as e:
            source = "\n      ".join(e.source.splitlines()[:6])
            failures[nb.stem] = f"cell [{e.exec_count}] raised {e.ename}: {e.evalue}\n      {source}"
        times[nb.stem] = round(time.time() - t0, 1)
    print("notebook times (s):", times)
    return failures


def _table(results: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(results / "tables" / f"{name}.csv")


def _content_problems(results: Path) -> list:
    """HICO-DET's classes and protocols in the tables that cover them (checked for the tables that exist)."""
    problems = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    tables = results / "tables"
    if (tables / "tab_splits_hicodet_test.csv").is_file():
        t = _table(results, "tab_splits_hicodet_test").set_index("setting")
        for name, n in {**UNSEEN, "rare": RARE}.items():
            expect(name in t.index and int(t.loc[name, "set_classes"]) == n
                   and int(t.loc[name, "other_classes"]) == 600 - n,
                   f"tab_splits_hicodet_test: {name} should have {n} of 600 classes in its set")
        expect(bool((t.loc[list(UNSEEN), "train_images"] > 0).all()),
               "tab_splits_hicodet_test: every protocol should keep training images (train file read)")
    if (tables / "tab1_main_zero_shot.csv").is_file():
        t = _table(results, "tab1_main_zero_shot")
        cells = set(zip(t["method"], t["protocol"]))
        want = {(m, study.PROTOCOL_NAMES[p]) for m in study.MAIN_METHODS for p in study.MAIN_PROTOCOLS}
        expect(cells == want, f"tab1_main_zero_shot: cells {sorted(cells)} instead of {sorted(want)}")
        uc = t[t["protocol"] == "UC"]
        expect(bool((uc["n_runs"] == len(study.UC_DRAWS[PROFILE])).all()),
               f"tab1_main_zero_shot: UC should pool the {len(study.UC_DRAWS[PROFILE])} draws")
    manifest = results / "manifest" / "05_zero_shot_results.json"
    if manifest.is_file():
        archs = {c["clip"]["arch"] for c in json.loads(manifest.read_text())["configs"].values()}
        expect(archs == {CLIP_ARCH}, f"05 manifest: the runs' CLIP should be {CLIP_ARCH}, not {sorted(archs)}")
    if (tables / "tab1_main_zero_shot_runs.csv").is_file():
        t = _table(results, "tab1_main_zero_shot_runs")
        want = {p for p in study.MAIN_PROTOCOLS if p != "uc"} | set(study.UC_DRAWS[PROFILE])
        expect(set(t["protocol"]) == want, f"tab1_main_zero_shot_runs: protocols {sorted(set(t['protocol']))}")
    if (tables / "tab2_ablations.csv").is_file():
        t = _table(results, "tab2_ablations")
        expect(list(t["configuration"]) == list(study.ABLATIONS), "tab2_ablations: not the nine ablation rows")
    for name, values in (("alpha", study.ALPHAS), ("topk", study.TOPKS), ("lambda", study.LAMBDAS)):
        if (tables / f"tab3_sweep_{name}.csv").is_file():
            t = _table(results, f"tab3_sweep_{name}")
            expect(sorted(t[name]) == sorted(values), f"tab3_sweep_{name}: values {list(t[name])}")
    if (tables / "tab_model_parameters.csv").is_file():
        t = _table(results, "tab_model_parameters")
        expect(t["model"].str.contains(CLIP_ARCH).any(), f"tab_model_parameters: no row for the profile's {CLIP_ARCH}")
    if (tables / "tab_training_history.csv").is_file():
        t = _table(results, "tab_training_history")
        expect(len(t) == study.experiment_config(PROFILE).train.epochs, "tab_training_history: one row per epoch")
    # Per-class tables: one row per HICO-DET class for each (method, seed), 120 of them unseen under NF-UC.
    for path in sorted(tables.glob("*.csv")):
        if f"tables/{path.name}" in WORLD_ONLY:
            continue  # reported apart
        t = pd.read_csv(path)
        if "hoi" in t.columns:
            counts = t["hoi"].value_counts()
            expect(set(counts.index) == set(range(600)) and counts.nunique() == 1,
                   f"{path.stem}: the hoi column should hold each of the 600 classes equally often")
            if "unseen" in t.columns and path.stem == "tab5_ap_vs_frequency":
                per_class = t.drop_duplicates("hoi").set_index("hoi")["unseen"].astype(bool)
                expect(int(per_class.sum()) == UNSEEN[study.ABLATION_PROTOCOL],
                       f"{path.stem}: {int(per_class.sum())} unseen classes, NF-UC has 120")
    return problems


def test_hicodet_smoke_end_to_end(tmp_path, monkeypatch, capsys):
    t0 = time.time()
    # The kernels import this checkout's hoilib, run on one thread, and draw no progress bars.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    for key, value in dict(OMP_NUM_THREADS="1", MPLBACKEND="Agg", TQDM_DISABLE="1", PYTHONHASHSEED="0").items():
        monkeypatch.setenv(key, value)
    fx = build_fixture(tmp_path / "fixture", progress=False)
    t_fixture = time.time() - t0
    assert preflight(fx.root, fx.clip_weights, CLIP_ARCH, PROFILE) == []

    results, executed = tmp_path / "results", tmp_path / "executed"
    executed.mkdir()
    failures = _run_notebooks(fx, results, tmp_path / "cache", executed)

    missing = []
    for nb in NOTEBOOKS:
        tables, figures = EXPECTED.get(nb.stem, ([], []))
        files = ([f"tables/{t}.csv" for t in tables] + [f"figures/{f}.png" for f in figures]
                 + [f"manifest/{nb.stem}.json"])
        missing += [f"{nb.stem}: {f}" for f in files if not (results / f).is_file()]
    world = [f for f in WORLD_ONLY if (results / f).is_file()]
    manifests = [json.loads(p.read_text()) for p in sorted((results / "manifest").glob("*.json"))]
    wrong_profile = [m.get("notebook", "?") for m in manifests if m.get("profile") != PROFILE]
    content = _content_problems(results) if results.is_dir() else ["no results folder written"]
    with capsys.disabled():
        print(f"\nhicodet-smoke: fixture {t_fixture:.0f} s, whole test {time.time() - t0:.0f} s")
    report = []
    if failures:
        report.append("notebooks that failed:\n" + "\n".join(f"  {k}: {v}" for k, v in failures.items()))
    if missing:
        report.append("results files missing:\n" + "\n".join(f"  {m}" for m in missing))
    if world:
        report.append(f"files of the built-in world written by a HICO-DET run: {world}")
    if wrong_profile:
        report.append(f"manifests of another profile: {wrong_profile}")
    if content:
        report.append("tables without HICO-DET's classes and protocols:\n" + "\n".join(f"  {c}" for c in content))
    assert not report, "\n".join(report)


def test_smoke_profile_differs_from_hicodet_only_in_scale():
    """Same data format, protocols, model, loss and evaluation as the hicodet profile; smaller model and schedule."""
    smoke, real = study.experiment_config(PROFILE), study.experiment_config("hicodet")
    assert set(smoke.diff(real)) == {"profile", "data.hicodet_root", "clip.arch", "clip.checkpoint", "train.epochs",
                                     "train.batch_size", "train.num_threads", "train.num_workers", "eval.batch_size"}
    assert smoke.data.dataset == "hicodet" and smoke.clip.arch == CLIP_ARCH
    assert set(study.UC_DRAWS[PROFILE]) < set(study.UC_DRAWS["hicodet"]) and study.SEEDS[PROFILE] == (0,)
