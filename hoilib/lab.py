"""The ablation lab (notebook 09): LAIN's and HOICLIP's switches as widgets, answered from cached runs.

Two kinds of knobs:

- Inference-time knobs (alpha, K, lambda, gamma scale) answer at once. A trained run's test outputs are stored once
  (`run_outputs`, cached in the run directory) in the form the final score is computed from: per pair S_inter (the
  logits without the verb head) and S_v (the verb head's scores, when the model has one), the detector scores and
  boxes of the pair's human and object, its object label and image; per image the global CLIP cosine with every HOI
  prompt (HOICLIP's training-free source, so that any K can be re-applied); the model's logit scale and class tables.
  Gamma scaling multiplies gamma_LA and gamma_IA inside the forward pass, so the outputs are stored for a small grid
  of scales (`GAMMA_SCALES`). `rescore` then applies the model's own rule (`hoiclip.add_verb_scores`,
  `hoiclip.keep_topk`, `hoiclip.zs_for_pairs`, `LAIN._prior`, `lain.entry_scores`) and `evaluate` scores the result
  with the evaluator; at the run's own settings this equals `engine.infer` (tests/test_lab.py) up to the last bit
  of an elementwise power or sigmoid (torch's vectorised kernels round an element differently depending on where it
  falls in the tensor, and `rescore` works on all images at once where the model works on one image at a time).
- Training knobs (the ablation switches) need new runs: `Lab.run_training` trains the missing seeds of a selection
  (reusing the experiment cache of `hoilib.runs`) and compares it with the default LAIN and with the baseline
  without adapters, seed by seed (`stats.comparison_table`). A run can be cancelled between two steps
  (`engine.Cancelled`); its last complete epoch stays in the cache and the next Run resumes from it.

`Lab.widget` is the user interface (ipywidgets); everything it shows comes from the functions above.
"""
from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from dataclasses import dataclass, field

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from hoilib import cache, engine, plotting, runs, stats, study
from hoilib.config import PROTOCOLS, ExperimentConfig
from hoilib.data.dataset import build_dataset
from hoilib.models import hoiclip
from hoilib.models.lain import LAIN, entry_scores
from hoilib.models.pairs import scale_boxes

__all__ = ["GAMMA_SCALES", "SWITCHES", "BASELINE", "KNOBS", "StoredOutputs", "store_outputs",
           "run_outputs", "rescore", "evaluate", "knob_sweep", "predictions_match", "map_text", "selection_overrides",
           "setting_label", "is_trained", "train_runs", "Lab"]

GAMMA_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)  # gamma_LA and gamma_IA multiplied by these at test time
# Training switches: LAIN's ablation rows and HOICLIP's verb classifier (config key -> label, default).
SWITCHES = {
    "model.use_la": ("Locality Adapter (LA)", True),
    "model.use_ia": ("Interaction Adapter (IA)", True),
    "model.la_visual": ("LA: visual info", True),
    "model.la_layout": ("LA: spatial layout", True),
    "model.la_mixer": ("LA mixer", "conv"),
    "model.ia_iprm": ("IA: IPRM", True),
    "model.ia_context": ("IA: context extraction", True),
    "model.use_verb_classifier": ("HOICLIP verb classifier", False),
}
BASELINE = study.MAIN_METHODS["w/o adapters"]
OUTPUTS_FILE = "lab_outputs_{key}.npz"  # in the run directory


# ---- stored outputs -----------------------------------------------------------------------------------------------
@dataclass
class StoredOutputs:
    """What re-scoring a trained run needs. P pairs, K kept boxes, N test images, G gamma scales.

    scales: the G gamma scales; s_inter: [G, P, T] logits without the verb head (T = verbs or HOI classes);
    s_verb: [G, P, V] verb-head scores (times the logit scale) or None; zs_cos: [N, C] global CLIP cosine of each
    image with each HOI prompt; box_score [K], box_label [K], boxes [K, 4] (kept boxes, original-image pixels);
    pairs: [P, 2] (human, object) rows of the kept boxes; pair_image: [P] image position in the split's annotations;
    pair_row: [P] dataset row of the pair's image (row of zs_cos); valid: [O, T] bool (object, class) validity;
    ov_to_hoi: [O, V] or None (HOI text mode); hoi_object, hoi_verb: [C]; settings: the run's own lambda_test,
    verb_alpha and zs_topk, and its logit scale exp(s) (already applied to s_inter and s_verb).
    """

    scales: tuple
    s_inter: torch.Tensor
    s_verb: torch.Tensor | None
    zs_cos: torch.Tensor
    box_score: torch.Tensor
    box_label: torch.Tensor
    boxes: torch.Tensor
    pairs: torch.Tensor
    pair_image: torch.Tensor
    pair_row: torch.Tensor
    valid: torch.Tensor
    ov_to_hoi: torch.Tensor | None
    hoi_object: torch.Tensor
    hoi_verb: torch.Tensor
    settings: dict
    _slices: list = field(default=None, repr=False)

    @property
    def has_verb_head(self) -> bool:
        return self.s_verb is not None

    def gamma_index(self, gamma: float) -> int:
        """Position of `gamma` in the stored grid (a run without adapters stores only 1.0 and answers any gamma)."""
        if len(self.scales) == 1:
            return 0
        d = np.abs(np.asarray(self.scales) - float(gamma))
        if d.min() > 1e-6:
            raise ValueError(f"gamma scale {gamma} is not in the stored grid {self.scales}")
        return int(d.argmin())

    def image_slices(self) -> list:
        """(dataset row, first pair, end pair) of every image with pairs (pairs are stored image after image)."""
        if self._slices is None:
            rows = self.pair_row.numpy()
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if rows.size else np.zeros(0, np.int64)
            ends = np.r_[starts[1:], rows.size]
            self._slices = [(int(rows[a]), int(a), int(b)) for a, b in zip(starts, ends)]
        return self._slices

    def to_arrays(self) -> dict:
        out = {k: getattr(self, k).numpy() for k in ("s_inter", "zs_cos", "box_score", "box_label", "boxes", "pairs",
                                                     "pair_image", "pair_row", "valid", "hoi_object", "hoi_verb")}
        if self.s_verb is not None:
            out["s_verb"] = self.s_verb.numpy()
        if self.ov_to_hoi is not None:
            out["ov_to_hoi"] = self.ov_to_hoi.numpy()
        out["meta"] = np.array(json.dumps({"scales": list(self.scales), "settings": self.settings}))
        return out

    @classmethod
    def from_arrays(cls, a) -> "StoredOutputs":
        meta = json.loads(str(a["meta"]))
        t = {k: torch.from_numpy(np.asarray(a[k])) for k in a.files if k != "meta"}
        return cls(scales=tuple(meta["scales"]), s_verb=t.pop("s_verb", None), ov_to_hoi=t.pop("ov_to_hoi", None),
                   settings=meta["settings"], **t)


@contextlib.contextmanager
def _attributes(obj, **values):
    old = {k: getattr(obj, k) for k in values}
    try:
        for k, v in values.items():
            setattr(obj, k, v)
        yield obj
    finally:
        for k, v in old.items():
            setattr(obj, k, v)


@torch.no_grad()
def store_outputs(cfg: ExperimentConfig, model: LAIN, test, scales=GAMMA_SCALES, progress: bool = False) -> StoredOutputs:
    """Run a trained model over the test split once per gamma scale and keep what `rescore` needs.

    The forward pass is the model's own, in the batches of `engine.infer` (cfg.eval.batch_size), with the verb
    weight and the training-free top-K set to 0: its logits are then S_inter exactly, the verb head's output is
    read by a hook (S_v = logit scale x its cosines, as in the forward), and the global CLIP cosines come from the
    model's `zero_shot_scores` with every class kept.
    Args:
        cfg: the run's config (its threads, batch size and device are used); model: the trained `LAIN`;
        test: the test split (`build_dataset(cfg, "test")`); scales: gamma scales (a model without adapters
        stores 1.0 only).
    """
    device = engine.resolve_device(cfg)
    torch.set_num_threads(cache.threads(cfg.train.num_threads))  # as engine.infer: the thread count changes bits
    was_training = model.training
    model.eval().to(device)
    scales = tuple(float(s) for s in scales) if model.adapters is not None else (1.0,)
    loader = torch.utils.data.DataLoader(test.dataset, batch_size=cfg.eval.batch_size, shuffle=False,
                                         num_workers=0, collate_fn=engine.Collator(model.preprocess, model.image_size))
    amp = cfg.train.amp and device.type == "cuda"
    scale = model.logit_scale.exp()
    s_inter, s_verb = [[] for _ in scales], [[] for _ in scales]
    zs, score, label, boxes, pairs, pair_image, pair_row = [], [], [], [], [], [], []
    n_box, row = 0, 0
    captured: list = []
    hook = model.verb_head.register_forward_hook(lambda m, i, o: captured.append(o)) if model.verb_head else None
    try:
        for batch in _progress(loader, progress, "lab: storing outputs"):
            batch = batch.to(device)
            with _attributes(model, zs_topk=model.vocab.num_classes), \
                    torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                zs.append(model.zero_shot_scores(batch.images).float().cpu())
            for g, gamma in enumerate(scales):
                captured.clear()
                with model.scaled_gammas(gamma), _attributes(model, verb_alpha=0.0, zs_topk=0), \
                        torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                    outputs = model(batch.images, batch.detections, None)
                s_inter[g].append(torch.cat([o["logits"].float() for o in outputs]).cpu())
                if hook is not None:
                    s_verb[g].append(torch.cat([scale * c for c in captured]).float().cpu() if captured
                                     else torch.zeros(0, model.vocab.num_verbs))
                if g:
                    continue
                for b, o in enumerate(outputs):  # the kept boxes and pairs do not depend on gamma
                    k, p = int(o["boxes"].shape[0]), int(o["pairs"].shape[0])
                    boxes.append(scale_boxes(o["boxes"].float(), (model.image_size,) * 2,
                                             tuple(batch.orig_sizes[b])).cpu())
                    score.append(o["scores"].float().cpu())
                    label.append(o["labels"].cpu())
                    pairs.append(o["pairs"].cpu() + n_box)
                    pair_image.append(torch.full((p,), int(batch.image_index[b]), dtype=torch.long))
                    pair_row.append(torch.full((p,), row + b, dtype=torch.long))
                    n_box += k
            row += len(batch)
    finally:
        if hook is not None:
            hook.remove()
        model.train(was_training)
    return StoredOutputs(
        scales=scales, s_inter=torch.stack([torch.cat(s) for s in s_inter]),
        s_verb=torch.stack([torch.cat(s) for s in s_verb]) if hook is not None else None,
        zs_cos=torch.cat(zs), box_score=torch.cat(score), box_label=torch.cat(label), boxes=torch.cat(boxes),
        pairs=torch.cat(pairs), pair_image=torch.cat(pair_image), pair_row=torch.cat(pair_row),
        valid=model.valid_all.cpu(), ov_to_hoi=model.ov_to_hoi.cpu() if model.text_mode == "verb" else None,
        hoi_object=model.hoi_object.cpu(), hoi_verb=model.hoi_verb.cpu(),
        settings=dict(lambda_test=float(model.lambda_test), verb_alpha=float(model.verb_alpha),
                      zs_topk=int(model.zs_topk), zs_rule=str(model.zs_rule), logit_scale=float(scale)))


def _progress(it, show: bool, desc: str):
    if not show:
        return it
    return tqdm(it, desc=desc, unit="batch", dynamic_ncols=True)


def outputs_path(cfg: ExperimentConfig, scales=GAMMA_SCALES):
    """Where `run_outputs` keeps a run's stored outputs: its run directory, keyed on the test detections, the gamma
    grid and this module's code (the run directory already covers the trained weights)."""
    inference = {"detections_test": cfg.data.detections_test and cache.file_digest(cfg.data.detections_test),
                 "scales": [float(s) for s in scales]}
    key = cache.digest({"inference": inference, "code": cache.code_digest(("lab.py",))})
    return runs.run_dir(cfg) / OUTPUTS_FILE.format(key=key)


def run_outputs(cfg: ExperimentConfig, scales=GAMMA_SCALES, progress: bool = False, test=None) -> StoredOutputs:
    """The stored outputs of the run of `cfg` (cached in its run directory; the run is trained first if the cache
    lacks it, see `runs.trained_model`)."""
    cfg = runs.resolve_clip(cfg, progress=progress)
    path = outputs_path(cfg, scales)
    if not path.is_file():
        model, cfg = runs.trained_model(cfg, progress=progress)
        out = store_outputs(cfg, model, test if test is not None else build_dataset(cfg, "test"), scales, progress)
        with cache.atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **out.to_arrays())
    with np.load(path) as a:
        return StoredOutputs.from_arrays(a)


# ---- re-scoring ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def rescore(out: StoredOutputs, gamma: float = 1.0, alpha: float | None = None, topk: int | None = None,
            lam: float | None = None) -> dict:
    """Predictions (the `engine.infer` format) of stored outputs under new inference-time settings.

    Args:
        gamma: scale of gamma_LA and gamma_IA (one of `out.scales`); alpha: weight of S_v (used only when the model
        has a verb head); topk: HOICLIP's training-free K (0 = off); lam: the detector-score exponent. None = the
        run's own value.
    The score rule is the model's: S = S_inter + alpha * S_v (`hoiclip.add_verb_scores`), plus the kept top-K global
    cosines on the (object, class) entries of each pair (`hoiclip.keep_topk`, `hoiclip.zs_for_pairs`), combined
    by the run's `model.zs_rule` and times s_h^lam * s_o^lam on valid entries (`LAIN._prior`, `lain.entry_scores`).
    """
    own = out.settings
    alpha = own["verb_alpha"] if alpha is None else float(alpha)
    topk = own["zs_topk"] if topk is None else int(topk)
    lam = own["lambda_test"] if lam is None else float(lam)
    g = out.gamma_index(gamma)
    logits = out.s_inter[g]
    objects = out.box_label[out.pairs[:, 1]]  # [P]
    hoi_verb = None if out.ov_to_hoi is not None else out.hoi_verb
    if out.has_verb_head:
        logits = hoiclip.add_verb_scores(logits, out.s_verb[g], alpha, hoi_verb)
    add = None
    if topk > 0 and logits.shape[0]:
        zs = hoiclip.keep_topk(out.zs_cos, topk)  # [N, C]
        mode = "verb" if out.ov_to_hoi is not None else "hoi"
        add = torch.cat([hoiclip.zs_for_pairs(zs[r], objects[a:b], out.ov_to_hoi, out.hoi_object, mode)
                         for r, a, b in out.image_slices()])
    prior = LAIN._prior(out.box_score, out.box_label, out.pairs, out.valid, lam)
    p, hoi, score = entry_scores(logits, prior, objects, out.ov_to_hoi, add, own["zs_rule"])
    return dict(image_index=out.pair_image[p].numpy().astype(np.int64),
                boxes_h=out.boxes[out.pairs[p, 0]].numpy().astype(np.float32),
                boxes_o=out.boxes[out.pairs[p, 1]].numpy().astype(np.float32),
                hoi=hoi.numpy().astype(np.int64), score=score.numpy().astype(np.float32))


def evaluate(cfg: ExperimentConfig, out: StoredOutputs, test, **knobs) -> dict:
    """mAP (percent; `engine.evaluate_run`) of `rescore(out, **knobs)` on the test split, plus time_s (re-score and
    evaluation wall time)."""
    t0 = time.perf_counter()
    m = engine.evaluate_run(cfg, rescore(out, **knobs), data=test)
    m["time_s"] = time.perf_counter() - t0
    return m


KNOBS = {"lambda": ("lam", (0.0, 1.0, 2.0, 2.8, 4.0)), "K": ("topk", (0, 5, 10, 15, 20)),
         "alpha": ("alpha", (0.0, 0.25, 0.5, 0.75, 1.0)), "gamma scale": ("gamma", GAMMA_SCALES)}


def knob_sweep(cfg: ExperimentConfig, out: StoredOutputs, test, knobs=KNOBS) -> pd.DataFrame:
    """Each inference-time knob varied alone, the others at the run's own values (gamma scale 1).

    Args: knobs: {name: (`rescore` argument, values)}; alpha is skipped without a verb head and the gamma scale
    without adapters (they change nothing there). Returns the long frame knob, value, metric, map (percent) for the
    metrics full, unseen, seen.
    """
    rows = []
    for name, (arg, values) in knobs.items():
        if (arg == "alpha" and not out.has_verb_head) or (arg == "gamma" and len(out.scales) == 1):
            continue
        for v in values:
            m = evaluate(cfg, out, test, **{arg: v})
            rows += [dict(knob=name, value=float(v), metric=k, map=float(m[k]))
                     for k in ("full", "unseen", "seen") if m.get(k) is not None]
    return pd.DataFrame(rows, columns=["knob", "value", "metric", "map"])


def predictions_match(a: dict, b: dict, rtol: float = 1e-5) -> bool:
    """True when two prediction sets (the `engine.infer` format) have the same rows (image, class, boxes) and
    scores equal to `rtol` (the last-bit differences described in the module docstring)."""
    keys = ("image_index", "hoi", "boxes_h", "boxes_o")
    return (all(np.array_equal(a[k], b[k]) for k in keys)
            and np.allclose(a["score"], b["score"], rtol=rtol, atol=1e-7))


def map_text(metrics: dict) -> str:
    """The lab's one line of mAP, e.g. "full 12.34 | unseen 5.67 | seen 13.45" (unseen/seen only with a protocol)."""
    keys = [k for k in ("full", "unseen", "seen", "rare") if metrics.get(k) is not None]
    return " | ".join(f"{k} {metrics[k]:.2f}" for k in keys)


# ---- training knobs -----------------------------------------------------------------------------------------------
def selection_overrides(values: dict) -> dict:
    """The dotted overrides of a selection of `SWITCHES` values (only the ones that differ from LAIN's default).

    Raises ValueError for an unknown switch or a combination no model can have (an LA without visual info and
    without layout)."""
    unknown = sorted(set(values) - set(SWITCHES))
    if unknown:
        raise ValueError(f"unknown lab switches {unknown}; the switches are {list(SWITCHES)}")
    merged = {k: values.get(k, default) for k, (_, default) in SWITCHES.items()}
    if merged["model.use_la"] and not (merged["model.la_visual"] or merged["model.la_layout"]):
        raise ValueError("the Locality Adapter needs visual info, the spatial layout or both "
                         "(model.la_visual and model.la_layout are both off)")
    return {k: v for k, v in merged.items() if v != SWITCHES[k][1]}


def setting_label(overrides: dict) -> str:
    """A selection's name in tables: "LAIN" (no change), "w/o adapters" (the baseline) or "LAIN: use_ia=False, ..."."""
    if not overrides:
        return "LAIN"
    if {k: v for k, v in overrides.items() if k in BASELINE} == BASELINE and all(
            k in BASELINE or k.startswith(("model.la_", "model.ia_")) for k in overrides):
        return "w/o adapters"  # the adapters' own switches change nothing without adapters
    return "LAIN: " + ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in overrides.items())


def is_trained(cfg: ExperimentConfig) -> bool:
    """True when the cache holds the complete training run of `cfg` (its checkpoint says so)."""
    ck = runs.run_dir(cfg) / engine.CHECKPOINT
    return ck.is_file() and bool(torch.load(ck, map_location="cpu", weights_only=False).get("complete"))


def train_runs(cfgs: list, on_progress=None, stop: threading.Event | None = None, names: list | None = None) -> list:
    """Train the runs of `cfgs` that the cache lacks (resuming any that stopped), then return every run's metrics
    (`runs.run_experiment`: cached, or inferred and evaluated once).

    Args:
        on_progress: called as on_progress(fraction of the missing training done, text) after every step.
        names: one label per config for the progress text (default: the config's name).
        stop: when set, training stops after the current step and `engine.Cancelled` is raised; the run's last
            complete epoch stays in the cache and the next call resumes from it.
    """
    names = names or [c.name for c in cfgs]
    todo = [(c, n) for c, n in zip(cfgs, names) if not is_trained(c)]
    for i, (c, name) in enumerate(todo):
        def on_step(epoch, step, steps, i=i, c=c, name=name):
            if on_progress is not None:
                done = ((epoch - 1) * steps + step) / (c.train.epochs * steps)
                on_progress((i + done) / len(todo), f"training {name} | {c.data.protocol} | seed {c.train.seed} "
                                                    f"({i + 1} of {len(todo)}): epoch {epoch}/{c.train.epochs}, "
                                                    f"step {step}/{steps}")
            return stop is not None and stop.is_set()

        engine.train(c, runs.run_dir(c), progress=False, resume=True, on_step=on_step)
    if on_progress is not None and todo:
        on_progress(1.0, "evaluating")
    return [runs.run_experiment(c, progress=False) for c in cfgs]


def _interval(row) -> str:
    lo, hi = row.ci_low_map, row.ci_high_map
    ci = f"[{lo:+.2f}, {hi:+.2f}]" if np.isfinite(lo) and np.isfinite(hi) else "[unbounded: one seed]"
    return f"{row.mean_diff_map:+.2f} {ci}"


# ---- the user interface -------------------------------------------------------------------------------------------
ALPHA_NOTE = ("alpha is a training-time weight in HOICLIP (S = S_inter + alpha * S_v); here it re-weights the stored "
              "S_inter and S_v of a model trained with alpha = {alpha}, and it changes nothing for a model without "
              "the verb classifier.")


class Lab:
    """The ablation lab: inference-time sliders over stored outputs and training switches with Run / Cancel.

    Args:
        cfg: the notebook's config (profile, cache); its protocol is replaced by `protocol`.
        protocol: the protocol of the comparisons (default: the study's ablation protocol, whose runs the default
            profile's cache holds for every seed).
        n_seeds: seeds per setting (seeds 0 .. n-1, as the study's grids); None = the profile's.
    `widget` is the interface; `run_training` and `inference` are what its buttons and sliders call.
    """

    def __init__(self, cfg: ExperimentConfig, protocol: str | None = None, n_seeds: int | None = None):
        self.cfg = runs.resolve_clip(cfg, progress=False)
        self.protocol = protocol or study.ABLATION_PROTOCOL
        self.n_seeds = int(n_seeds or len(study.SEEDS.get(cfg.profile, (0,))))
        self.settings = {"LAIN": {}, "w/o adapters": dict(BASELINE)}  # label -> overrides, in order of training
        self.table = pd.DataFrame()  # one row per (selection, metric): the comparisons so far
        self.long = pd.DataFrame(columns=["setting", "protocol", "seed", "metric", "value"])
        self.last_comparison = pd.DataFrame()
        self._tests, self._outputs = {}, {}
        self._thread, self._stop = None, threading.Event()
        self._widget = None

    # ---- configs and data ------------------------------------------------------------------------------------------
    def config(self, overrides: dict, seed: int, protocol: str | None = None) -> ExperimentConfig:
        """The run of a setting: the notebook's config with `overrides`, the protocol and train.seed = seed."""
        return self.cfg.override(overrides, {"data.protocol": protocol or self.protocol, "train.seed": int(seed)})

    def test_split(self, protocol: str | None = None):
        protocol = protocol or self.protocol
        if protocol not in self._tests:
            self._tests[protocol] = build_dataset(self.config({}, 0, protocol), "test")
        return self._tests[protocol]

    def outputs(self, setting: str, seed: int, protocol: str | None = None) -> StoredOutputs:
        """Stored outputs of a trained run (computed once per run and kept in its run directory)."""
        protocol = protocol or self.protocol
        key = (setting, int(seed), protocol)
        if key not in self._outputs:
            self._outputs[key] = run_outputs(self.config(self.settings[setting], seed, protocol),
                                             test=self.test_split(protocol))
        return self._outputs[key]

    # ---- what the controls do --------------------------------------------------------------------------------------
    def inference(self, setting: str = "LAIN", seed: int = 0, *, gamma: float = 1.0, alpha: float | None = None,
                  topk: int | None = None, lam: float | None = None, protocol: str | None = None) -> dict:
        """mAP of a trained run re-scored at the given inference-time settings (see `evaluate`)."""
        cfg = self.config(self.settings[setting], seed, protocol)
        return evaluate(cfg, self.outputs(setting, seed, protocol), self.test_split(protocol), gamma=gamma,
                        alpha=alpha, topk=topk, lam=lam)

    def run_training(self, values: dict | None = None, n_seeds: int | None = None, protocol: str | None = None,
                     stop: threading.Event | None = None, on_progress=None) -> pd.DataFrame:
        """Train a selection of switches (missing seeds only) beside the default LAIN and the baseline, and compare.

        Args:
            values: {switch: value} (`SWITCHES`; missing ones keep LAIN's default); None = LAIN itself.
            n_seeds: seeds 0 .. n-1 (None = the lab's); protocol: None = the lab's.
            stop, on_progress: see `train_runs`.
        Returns:
            the selection's rows of `self.table`: per metric (full, unseen) the selection's mean mAP and its paired
            difference with LAIN and with the baseline, with 95% t intervals over seeds (`stats.comparison_table`).
        """
        overrides = selection_overrides(values or {})
        label = setting_label(overrides)
        protocol = protocol or self.protocol
        seeds = list(range(int(n_seeds or self.n_seeds)))
        self.settings.setdefault(label, overrides)
        settings = list(dict.fromkeys(["LAIN", "w/o adapters", label]))
        jobs = [(s, seed) for s in settings for seed in seeds]
        metrics = train_runs([self.config(self.settings[s], seed, protocol) for s, seed in jobs], on_progress, stop,
                             names=[s for s, _ in jobs])
        long = pd.DataFrame([dict(setting=s, protocol=protocol, seed=seed, metric=m,
                                  value=float("nan") if r.get(m) is None else float(r[m]))
                             for (s, seed), r in zip(jobs, metrics) for m in runs.METRICS])
        self.long = pd.concat([self.long, long], ignore_index=True).drop_duplicates(
            ["setting", "protocol", "seed", "metric"], keep="last")
        # A selection is not compared with itself (the default selection is LAIN).
        comparisons = {f"vs {a}": (a, label) for a in ("LAIN", "w/o adapters") if a != label}
        comp = stats.comparison_table(long, comparisons, metrics=("full", "unseen"), protocols=[protocol])
        self.last_comparison = comp
        rows = []
        for metric, g in comp.groupby("metric", sort=False):
            mean = long[(long["setting"] == label) & (long["metric"] == metric)]["value"].mean()
            row = dict(selection=label, protocol=protocol, seeds=len(seeds), metric=metric, map=round(float(mean), 2))
            row.update({f"{c} (95% CI)": "-" for c in ("vs LAIN", "vs w/o adapters")})
            for r in g.itertuples():
                row[f"{r.comparison} (95% CI)"] = _interval(r)
            rows.append(row)
        new = pd.DataFrame(rows)
        keep = self.table
        if len(keep):
            keep = keep[~((keep["selection"] == label) & (keep["protocol"] == protocol))]
        self.table = pd.concat([keep, new], ignore_index=True)
        return new

    # ---- widgets ---------------------------------------------------------------------------------------------------
    @property
    def widget(self):
        """The interface (built on first use): the inference panel above the training panel."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _build(self):
        m = self.cfg.model
        style = {"description_width": "150px"}
        layout = w.Layout(width="460px")
        self.w_run = w.Dropdown(description="trained run", style=style, layout=layout)
        self.w_gamma = w.SelectionSlider(options=list(GAMMA_SCALES), value=1.0, description="gamma scale",
                                         style=style, layout=layout)
        self.w_alpha = w.FloatSlider(value=m.verb_alpha, min=0.0, max=1.0, step=0.05, description="alpha (S_v weight)",
                                     style=style, layout=layout)
        self.w_topk = w.IntSlider(value=m.zs_topk, min=0, max=20, description="K (training-free)", style=style,
                                  layout=layout)
        self.w_lambda = w.FloatSlider(value=m.lambda_test, min=0.0, max=4.0, step=0.1, description="lambda",
                                      style=style, layout=layout)
        self.w_map = w.HTML()
        self.w_info = w.HTML()
        self.w_note = w.HTML()
        for x, cls in ((self.w_run, "lab-run-choice"), (self.w_gamma, "lab-gamma"), (self.w_alpha, "lab-alpha"),
                       (self.w_topk, "lab-topk"), (self.w_lambda, "lab-lambda"), (self.w_map, "lab-map"),
                       (self.w_info, "lab-info")):
            x.add_class(cls)
        self._refresh_runs()
        self.w_run.observe(self._on_run_choice, names="value")
        for x in (self.w_gamma, self.w_alpha, self.w_topk, self.w_lambda):
            x.observe(lambda _: self._update_inference(), names="value")
        self._on_run_choice()
        inference = w.VBox([
            w.HTML("<b>Inference-time knobs</b>: re-score the stored outputs of a trained run and evaluate again "
                   "(no retraining)."),
            self.w_run, self.w_gamma, self.w_alpha, self.w_topk, self.w_lambda,
            w.HBox([w.HTML("<b>mAP</b>&nbsp;"), self.w_map]), self.w_info, self.w_note])

        self.w_switches = {}
        for key, (label, default) in SWITCHES.items():
            if isinstance(default, bool):
                x = w.Checkbox(value=default, description=label, indent=False)
            else:
                x = w.Dropdown(options=["conv", "local_attn"], value=default, description=label, style=style)
            x.add_class("lab-switch-" + key.split(".", 1)[1])
            self.w_switches[key] = x
        self.w_protocol = w.Dropdown(options=list(PROTOCOLS), value=self.protocol, description="protocol",
                                     style=style)
        self.w_seeds = w.IntSlider(value=self.n_seeds, min=1, max=max(5, self.n_seeds), description="seeds",
                                   style=style)
        self.w_go = w.Button(description="Run", button_style="primary", icon="play")
        self.w_cancel = w.Button(description="Cancel", icon="stop", disabled=True)
        self.w_progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress", style=style)
        self.w_status = w.HTML()
        self.w_results = w.HTML()
        self.w_figure = w.Image(format="png")
        for x, cls in ((self.w_protocol, "lab-protocol"), (self.w_seeds, "lab-seeds"), (self.w_go, "lab-go"),
                       (self.w_cancel, "lab-cancel"), (self.w_progress, "lab-progress"),
                       (self.w_status, "lab-status"), (self.w_results, "lab-results")):
            x.add_class(cls)
        self.w_go.on_click(lambda _: self.start_training())
        self.w_cancel.on_click(lambda _: self._stop.set())
        self._show_results()
        training = w.VBox([
            w.HTML("<b>Training knobs</b>: train the missing seeds of a selection (cached runs are reused) and "
                   "compare it with LAIN and with the baseline without adapters, seed by seed."),
            w.HBox([w.VBox(list(self.w_switches.values())[:4]), w.VBox(list(self.w_switches.values())[4:])]),
            self.w_protocol, self.w_seeds, w.HBox([self.w_go, self.w_cancel]), self.w_progress, self.w_status,
            self.w_results, self.w_figure])
        return w.VBox([inference, w.HTML("<hr>"), training])

    def _refresh_runs(self) -> None:
        """The run choices: every setting trained so far, per seed (only runs that the cache holds)."""
        opts = [(f"{s} | seed {seed}", (s, seed)) for s in self.settings for seed in range(self.n_seeds)
                if is_trained(self.config(self.settings[s], seed))]
        current = self.w_run.value if self.w_run.options else None
        keep = current in [v for _, v in opts]
        self._quiet = True
        try:
            self.w_run.options = opts
            if opts:
                self.w_run.value = current if keep else opts[0][1]
        finally:
            self._quiet = False
        if opts and not keep and self._widget is not None:
            self._on_run_choice()

    def _on_run_choice(self, _=None) -> None:
        if getattr(self, "_quiet", False):
            return
        if self.w_run.value is None:
            self.w_map.value = ""
            self.w_info.value = "no trained run yet: press Run below"
            return
        out = self.outputs(*self.w_run.value)
        own = out.settings
        self._quiet = True  # one evaluation below, not one per slider put back to the run's own value
        try:
            self.w_alpha.value, self.w_topk.value = own["verb_alpha"], own["zs_topk"]
            self.w_lambda.value, self.w_gamma.value = own["lambda_test"], 1.0
        finally:
            self._quiet = False
        self.w_alpha.disabled = not out.has_verb_head
        self.w_gamma.disabled = len(out.scales) == 1
        self.w_note.value = "<small>" + ALPHA_NOTE.format(alpha=own["verb_alpha"]) + (
            "" if len(out.scales) > 1 else " This run has no adapters: the gamma scale changes nothing.") + "</small>"
        self._update_inference()

    def _update_inference(self) -> None:
        if getattr(self, "_quiet", False) or self.w_run.value is None:
            return
        setting, seed = self.w_run.value
        knobs = dict(gamma=float(self.w_gamma.value), alpha=round(float(self.w_alpha.value), 4),
                     topk=int(self.w_topk.value), lam=round(float(self.w_lambda.value), 4))
        m = self.inference(setting, seed, **knobs)
        self.w_map.value = map_text(m)
        self.w_info.value = (f"<small>{setting}, seed {seed}: gamma x {knobs['gamma']:.2f}, alpha {knobs['alpha']:.2f}, "
                             f"K {knobs['topk']}, lambda {knobs['lam']:.2f}; re-scored and evaluated in "
                             f"{m['time_s']:.2f} s</small>")

    def _switch_values(self) -> dict:
        return {k: x.value for k, x in self.w_switches.items()}

    def start_training(self) -> None:
        """What Run does: train the current selection in a background thread (the interface stays live)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        args = (self._switch_values(), int(self.w_seeds.value), self.w_protocol.value)
        self.w_go.disabled, self.w_cancel.disabled = True, False
        self.w_progress.value, self.w_status.value = 0.0, "starting"
        self._thread = threading.Thread(target=self._train_in_background, args=args, daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Block until a training started by Run has finished (tests, scripts)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _train_in_background(self, values: dict, n_seeds: int, protocol: str) -> None:
        def progress(frac, text):
            self.w_progress.value = float(frac)
            self.w_status.value = text

        try:
            new = self.run_training(values, n_seeds, protocol, stop=self._stop, on_progress=progress)
            self.w_status.value = f"done: {new['selection'].iloc[0]} | {protocol} | {n_seeds} seed(s)"
            self.w_progress.value = 1.0
            self._show_results()
            if protocol == self.protocol and n_seeds <= self.n_seeds:
                self._refresh_runs()
        except engine.Cancelled as e:
            self.w_status.value = f"cancelled ({e}); press Run to continue"
        except Exception as e:  # shown in the interface: a background thread has no cell to raise into
            self.w_status.value = f"<span style='color:#b00'>error: {type(e).__name__}: {e}</span>"
        finally:
            self.w_go.disabled, self.w_cancel.disabled = False, True

    def _show_results(self) -> None:
        self.w_results.value = self.table.to_html(index=False) if len(self.table) else "<i>no comparison yet</i>"
        if len(self.last_comparison):
            fig = plotting.plot_paired_differences(self.last_comparison, title=self.table["selection"].iloc[-1])
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
            plt.close(fig)
            self.w_figure.value = buf.getvalue()
