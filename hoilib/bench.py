"""Throughput benchmark: training and inference images/s of the engine's LAIN step, reference vs fast path.

    python -m hoilib.bench                # the built-in world's default profile + ViT-B/16 at 224 px, on the CPU
    python -m hoilib.bench --gpu          # the same on CUDA as well (mixed precision), and the kernels
    python -m hoilib.bench --only vit --pairs 30 152 435 --gpu --batch-size 8

Every setting times the reference implementation (`model.fast_path=False`) and the fast one on the same model and
batches in this one process, alternating between them (`--reps` rounds; the best round of each counts, since the
CPU is shared), and prints `<setting>: speedup N.NNx` for training and for inference.
(a) "world": the default profile's model on real batches of the built-in world (the pretrained small CLIP when it
    is cached, random CLIP weights otherwise: the speed is the same).
(b) "ViT-B-16@224": CLIP ViT-B/16 at 224 px with random weights, HICO-DET's vocabulary (117 verb prompts, 600
    classes, RF-UC seen mask) and synthetic images and detections with 256-d detector features, at a given number
    of human-object pairs per image: 30 (3 people, 8 objects: a typical HICO-DET image) and 152 (8 people, 12
    objects: a crowded one; LAIN keeps at most 15 + 15 boxes, i.e. up to 435 pairs).
CPU settings run at `--threads` torch threads (default 1, as the study's runs: on a shared 2-core machine two
OpenMP threads wait on each other whenever another process takes a core, which made single measurements vary
10-fold). A training step is the engine's: forward, focal loss, backward, gradient clipping (off under AMP), AdamW.
Inference is forward + postprocess. Peak RSS of one training step per path comes from a fresh child process each
(`--no-rss` skips it). `--gpu` adds the Triton kernels against their PyTorch references, torch SDPA (HO rows with
a mask) and FlexAttention. The Locality Adapter's cost estimate (why it has no kernel) is printed first.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import threading
import time
from pathlib import Path

import numpy as np
import torch

from hoilib import engine
from hoilib.config import ExperimentConfig
from hoilib.data.dataset import build_dataset
from hoilib.data.detections import Detections
from hoilib.data.splits import hicodet_protocol
from hoilib.data.vocab import hicodet_vocabulary
from hoilib.kernels.ho_attention import ho_attention, pair_layout
from hoilib.kernels.pair_iou import pair_min_iou
from hoilib.models import build_model
from hoilib.models.clip_backbone import build_clip
from hoilib.models.clip_pretrain import clip_cache_path

# (people, objects) per synthetic image -> number of LAIN pairs = people * (people + objects - 1)
PAIR_LAYOUTS = {30: (3, 8), 152: (8, 12), 435: (15, 15)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model, batches: list, device: torch.device, steps: int, warmup: int = 1, amp: bool = False,
               grad_clip: float = 0.1, seen_mask=None, train: bool = True, optimizer=None) -> tuple[float, list]:
    """Images/s of `steps` training steps (or inference passes, train=False) of `model` over `batches` (engine
    `Batch`es on `device`, cycled) after `warmup` untimed ones. Returns (images/s, pairs per image kept)."""
    params = list(model.trainable_parameters())
    opt = optimizer or torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    seen = None if seen_mask is None else seen_mask.to(device)
    model.train(train)
    n_img, pairs = 0, []
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0, n_img = time.perf_counter(), 0
        b = batches[i % len(batches)]
        if train:
            loss, _ = engine.training_loss(model, b, seen, None, amp)
            opt.zero_grad(set_to_none=True)
            if amp:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
                opt.step()
        else:
            with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                out = model(b.images, b.detections, None)
                model.postprocess(out, b.orig_sizes)
            pairs += [int(o["pairs"].shape[0]) for o in out]
        n_img += len(b)
    _sync(device)
    return n_img / (time.perf_counter() - t0), pairs


def compare_paths(model, batches: list, device: torch.device, steps: int, reps: int = 1, amp: bool = False,
                  grad_clip: float = 0.1, seen_mask=None, infer_steps: int = 0) -> dict:
    """Reference vs fast path on the same model and batches, alternating, `reps` rounds (best round counts);
    `steps` training steps and `infer_steps` (default: steps) inference passes per round and path.

    Returns dict(train_ref, train_fast, infer_ref, infer_fast (images/s), pairs_per_image, batch_size).
    """
    dev_batches = [b.to(device) for b in batches]
    model.to(device)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4, weight_decay=1e-4)
    best = {}
    pairs = []
    for _ in range(reps):
        for train in (True, False):
            for fast in (False, True):
                model.fast_path = fast
                ips, p = time_steps(model, dev_batches, device, steps if train else (infer_steps or steps), amp=amp,
                                    grad_clip=grad_clip, seen_mask=seen_mask, train=train, optimizer=opt)
                key = f"{'train' if train else 'infer'}_{'fast' if fast else 'ref'}"
                best[key] = max(best.get(key, 0.0), ips)
                pairs += p
    model.fast_path = True
    return dict(best, pairs_per_image=float(np.mean(pairs)) if pairs else 0.0, batch_size=len(batches[0]))


# ---- (a) the built-in world ---------------------------------------------------------------------------------
def world_setup(cfg: ExperimentConfig, n_batches: int = 8, seed: int = 0):
    """(model, batches, seen mask) of the world profile `cfg`: its model (random init, seed 0) and `n_batches`
    training batches of cfg.train.batch_size images."""
    train = build_dataset(cfg, "train")
    ck = cfg.clip.checkpoint or (str(clip_cache_path(cfg)) if clip_cache_path(cfg).is_file() else "")
    clip = build_clip(cfg.clip.arch, ck)
    torch.manual_seed(seed)
    model = build_model(cfg, train.vocab, clip=clip, protocol_unseen=train.unseen)
    model.clip_weights = "pretrained" if ck else "random"
    col = engine.Collator(model.preprocess, model.image_size)
    bs = cfg.train.batch_size
    idx = np.random.default_rng(seed).permutation(len(train.dataset))[:bs * n_batches]
    batches = [col([train.dataset[int(i)] for i in idx[s:s + bs]]) for s in range(0, len(idx) - bs + 1, bs)]
    return model, batches, engine.seen_class_mask(train.vocab.num_classes, train.unseen)


def bench_world(cfg: ExperimentConfig, device: torch.device, steps: int = 8, reps: int = 3, amp: bool = False) -> dict:
    model, batches, seen = world_setup(cfg)
    r = compare_paths(model, batches, device, steps, reps, amp=amp, grad_clip=cfg.train.grad_clip, seen_mask=seen)
    r.update(setting="world", clip_weights=model.clip_weights, device=str(device), amp=amp,
             threads=torch.get_num_threads())
    return r


# Operations an exact fast path keeps: the GEMMs, the attention and convolution kernels, and the dropout masks (drawn
# as the reference draws them, so that a fast training run equals the reference's).
KEPT_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::bernoulli_", "aten::mkldnn_convolution",
            "aten::convolution_backward", "aten::_scaled_dot_product_flash_attention_for_cpu",
            "aten::_scaled_dot_product_flash_attention_for_cpu_backward")


def kept_op_times(fn, steps: int) -> tuple[float, dict]:
    """Profile one call of `fn`, which runs `steps` steps (torch.profiler, CPU self time). Returns (ms per step over
    every operation, {operation of KEPT_OPS: ms per step})."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    ops = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ops) / steps / 1e3
    return total, {e.key: e.self_cpu_time_total / steps / 1e3 for e in ops if e.key in KEPT_OPS}


def world_kept_ops(cfg: ExperimentConfig, steps: int = 8) -> tuple[float, dict]:
    """`kept_op_times` of the world's fast training step (CPU, `steps` steps): what bounds any exact speed-up."""
    model, batches, seen = world_setup(cfg)
    model.fast_path = True
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4, weight_decay=1e-4)

    def run(n):
        time_steps(model, batches, torch.device("cpu"), n, warmup=0, grad_clip=cfg.train.grad_clip, seen_mask=seen,
                   optimizer=opt)

    run(1)  # warm-up
    return kept_op_times(lambda: run(steps), steps)


# ---- (b) ViT-B/16 at 224 px ---------------------------------------------------------------------------------
def synthetic_items(n: int, n_people: int, n_objects: int, size: int = 224, seed: int = 0,
                    num_objects: int = 80, feat_dim: int = 256, vocab=None) -> list:
    """Dataset-like items (image, size, gt, dets) with boxes on a grid of cells (so NMS keeps them all)."""
    rng = np.random.default_rng(seed)
    k = n_people + n_objects
    cols = int(np.ceil(np.sqrt(k)))
    cell = size / cols
    items = []
    for i in range(n):
        cells = rng.permutation(cols * cols)[:k]
        x0, y0 = (cells % cols) * cell, (cells // cols) * cell
        w, h = rng.uniform(0.5, 0.95, k) * cell, rng.uniform(0.5, 0.95, k) * cell
        boxes = np.stack([x0, y0, x0 + w, y0 + h], 1).astype(np.float32)
        labels = np.concatenate([np.zeros(n_people, np.int64), rng.integers(1, num_objects, n_objects)])
        scores = rng.uniform(0.5, 0.99, k).astype(np.float32)
        dets = Detections(boxes, scores, labels, rng.normal(size=(k, feat_dim)).astype(np.float32))
        # ground truth: each person interacts with one object, with a verb valid for that object
        gt_h, gt_o, verb, obj, hoi = [], [], [], [], []
        for p in range(n_people):
            o = n_people + int(rng.integers(n_objects))
            if vocab is not None:
                classes = np.flatnonzero(vocab.hoi_classes[:, 1] == labels[o])
                c = int(rng.choice(classes))
                verb.append(int(vocab.hoi_classes[c, 0])), hoi.append(c)
            else:
                verb.append(0), hoi.append(0)
            gt_h.append(boxes[p]), gt_o.append(boxes[o]), obj.append(int(labels[o]))
        gt = dict(boxes_h=np.array(gt_h, np.float32), boxes_o=np.array(gt_o, np.float32),
                  verb=np.array(verb, np.int64), object=np.array(obj, np.int64), hoi=np.array(hoi, np.int64))
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        items.append(dict(index=i, image_index=i, filename=f"synthetic_{i}", image=image, size=(size, size), gt=gt,
                          dets=dets))
    return items


def vit_setup(n_pairs: int = 30, batch_size: int = 2, arch: str = "ViT-B-16", n_batches: int = 2):
    """(model, batches, seen mask) of CLIP `arch` at its native size with random weights, HICO-DET's vocabulary and
    synthetic images with `n_pairs` pairs each (`PAIR_LAYOUTS`)."""
    if n_pairs not in PAIR_LAYOUTS:
        raise ValueError(f"n_pairs must be one of {sorted(PAIR_LAYOUTS)}, got {n_pairs}")
    cfg = ExperimentConfig.from_preset("hicodet").override({"clip.arch": arch, "clip.checkpoint": ""})
    vocab = hicodet_vocabulary()
    unseen = hicodet_protocol(cfg.data.protocol)
    torch.manual_seed(0)
    model = build_model(cfg, vocab, clip=build_clip(arch), protocol_unseen=unseen)
    n_people, n_objects = PAIR_LAYOUTS[n_pairs]
    items = synthetic_items(batch_size * n_batches, n_people, n_objects, size=model.image_size, vocab=vocab)
    col = engine.Collator(model.preprocess, model.image_size)
    batches = [col(items[s:s + batch_size]) for s in range(0, len(items), batch_size)]
    return model, batches, engine.seen_class_mask(vocab.num_classes, unseen), cfg.train.grad_clip


def bench_vit(device: torch.device, n_pairs: int = 30, steps: int = 2, batch_size: int = 2, amp: bool = False,
              arch: str = "ViT-B-16", reps: int = 2, infer_steps: int = 6) -> dict:
    model, batches, seen, clip_norm = vit_setup(n_pairs, batch_size, arch)
    r = compare_paths(model, batches, device, steps, reps, amp=amp, grad_clip=clip_norm, seen_mask=seen,
                      infer_steps=infer_steps)
    r.update(setting=f"{arch}@{model.image_size} {n_pairs} pairs", device=str(device), amp=amp,
             threads=torch.get_num_threads())
    return r


# ---- peak memory of one training step, per path, in fresh processes -------------------------------------------
def _rss_mib() -> float:
    with open("/proc/self/statm") as f:  # Linux: resident pages are the second field
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def _rss_child(setting: str, fast: bool, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    if setting == "world":
        model, batches, seen = world_setup(ExperimentConfig.from_preset("default"), n_batches=2)
        clip_norm = 0.1
    else:
        model, batches, seen, clip_norm = vit_setup(int(setting.split(":")[1]), n_batches=1)
    model.fast_path = fast
    peak_before, rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, _rss_mib()
    sampled, done = [rss_before], threading.Event()

    def sample():  # torch releases the GIL inside its ops, so this thread sees the step's peak within ~1 ms
        while not done.wait(0.001):
            sampled.append(_rss_mib())
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    time_steps(model, batches, torch.device("cpu"), steps=1, warmup=1, grad_clip=clip_norm, seen_mask=seen)
    done.set()
    t.join()
    queue.put(dict(rss_before=rss_before, rss_step_peak=max(sampled), process_peak_before=peak_before,
                   process_peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))  # KiB -> MiB


def peak_rss(setting: str, fast: bool, threads: int) -> dict:
    """Memory of two training steps on the CPU with one path, in a fresh process that builds `setting` ("world" or
    "vit:<pairs>"), MiB: rss_before (resident before the steps), rss_step_peak (sampled maximum during them),
    process_peak_before / process_peak (getrusage ru_maxrss before and after them)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_rss_child, args=(setting, fast, threads, q))
    p.start()
    r = q.get()
    p.join()
    return r


# ---- (c) the Locality Adapter: is a kernel worth it? ----------------------------------------------------------------
def la_estimate(width: int = 768, grid: int = 14, adapter_dim: int = 32, kernels=(3, 5), pairs=(30, 152, 435),
                roi: int = 7, queries: int = 10) -> list:
    """FLOP and byte estimate of the Locality Adapter per image and layer (forward) against the layer it sits in, at
    the given pairs per image (ViT-B/16 defaults). The LA works on the G patches of the image only: its cost does
    not grow with the pairs; the per-pair adapter work is the IA's decoders (context per box, IPRM and token
    decoder per pair). Returns one dict per pair count."""
    g, d, da = grid * grid, width, adapter_dim
    k = max(kernels)
    la_flops = 2 * g * (d * da + da * da + da * da * k * k + da * d)  # down, proj_in, merged KxK conv, up
    la_bytes = 4 * (2 * g * d + 4 * g * da + da * da * k * k)  # read F, write dF, Da-wide activations, weights
    rows = []
    for p in pairs:
        tokens = 1 + g + p
        layer_flops = 2 * tokens * 12 * d * d + 4 * (g + 1) ** 2 * d + 4 * p * (g + 1) * d  # linears + attention
        boxes = 2 * p ** 0.5 + 1  # ~ humans + objects of a p-pair image (order of magnitude)
        ia_flops = _dec_flops(boxes, queries, roi * roi, da) + _dec_flops(2 * p, queries, queries, da) + \
            _dec_flops(2 * p, 1, queries, da)
        rows.append(dict(pairs=p, la_mflops=la_flops / 1e6, la_kib=la_bytes / 1024, ia_mflops=ia_flops / 1e6,
                         layer_mflops=layer_flops / 1e6, la_share=la_flops / layer_flops,
                         ia_share=ia_flops / layer_flops, la_intensity=la_flops / la_bytes))
    return rows


def _dec_flops(n: float, lq: int, lk: int, d: int) -> float:
    """Forward FLOPs of n IA decoder layers (q, k, v, out projections; attention; FFN d -> 2d -> d)."""
    return 2 * n * (2 * lq * d * d + 2 * lk * d * d + 2 * lq * lk * d + 4 * lq * d * d)


# ---- (d) kernels on the GPU ------------------------------------------------------------------------------------
def bench_kernels(device: torch.device, n_pairs: int = 152, batch: int = 8, heads: int = 12, head_dim: int = 64,
                  grid: int = 196, dtype=torch.float16, iters: int = 50) -> list:
    """HO-token attention (forward + backward) as the Triton kernels, the PyTorch reference, torch SDPA on the HO
    rows with a mask (keys: the patches, then every HO token's own key; the mask keeps patches + self) and
    FlexAttention with the same mask; and pair min-IoU, Triton vs reference. Returns rows of (name, ms)."""
    lay = pair_layout([n_pairs] * batch, device)
    p = n_pairs * batch
    mk = lambda *s: torch.randn(*s, device=device, dtype=dtype, requires_grad=True)  # noqa: E731
    q, ks, vs = mk(p, heads, head_dim), mk(p, heads, head_dim), mk(p, heads, head_dim)
    kimg, vimg = mk(batch, grid, heads, head_dim), mk(batch, grid, heads, head_dim)
    go = torch.randn(p, heads, head_dim, device=device, dtype=dtype)

    def timed(fn):
        for _ in range(3):
            fn()
        _sync(device)
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        _sync(device)
        return (time.perf_counter() - t) / iters * 1e3

    def sdpa_rows():
        # HO rows as SDPA over [patches; all HO keys of the image] with a (G + S)-wide mask: patches + self.
        qp = q.view(batch, n_pairs, heads, head_dim).transpose(1, 2)
        k_all = torch.cat([kimg.transpose(1, 2), ks.view(batch, n_pairs, heads, head_dim).transpose(1, 2)], 2)
        v_all = torch.cat([vimg.transpose(1, 2), vs.view(batch, n_pairs, heads, head_dim).transpose(1, 2)], 2)
        allow = torch.cat([torch.ones(n_pairs, grid, dtype=torch.bool, device=device),
                           torch.eye(n_pairs, dtype=torch.bool, device=device)], 1)
        return torch.nn.functional.scaled_dot_product_attention(qp, k_all, v_all, attn_mask=allow)

    rows = [("ho_attention triton fwd+bwd",
             timed(lambda: ho_attention(q, ks, vs, kimg, vimg, lay, "triton").backward(go))),
            ("ho_attention torch reference fwd+bwd",
             timed(lambda: ho_attention(q, ks, vs, kimg, vimg, lay, "torch").backward(go))),
            ("ho_attention SDPA masked (G+S keys) fwd+bwd",
             timed(lambda: sdpa_rows().transpose(1, 2).reshape(p, heads, head_dim).backward(go)))]
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def allowed(b, h, qi, ki):
            return (ki < grid) | (ki - grid == qi)

        bm = create_block_mask(allowed, None, None, n_pairs, grid + n_pairs, device=str(device))
        flex = torch.compile(flex_attention)

        def flex_rows():
            qp = q.view(batch, n_pairs, heads, head_dim).transpose(1, 2)
            k_all = torch.cat([kimg.transpose(1, 2), ks.view(batch, n_pairs, heads, head_dim).transpose(1, 2)], 2)
            v_all = torch.cat([vimg.transpose(1, 2), vs.view(batch, n_pairs, heads, head_dim).transpose(1, 2)], 2)
            return flex(qp, k_all, v_all, block_mask=bm)
        rows.append(("ho_attention FlexAttention fwd+bwd",
                     timed(lambda: flex_rows().transpose(1, 2).reshape(p, heads, head_dim).backward(go))))
    except Exception as e:  # FlexAttention needs a recent torch with a working compiler on this device
        rows.append((f"ho_attention FlexAttention unavailable ({type(e).__name__})", float("nan")))
    bh, bo = (torch.rand(p, 4, device=device).sort(-1).values * 224 for _ in range(2))
    gh, go_ = (torch.rand(40, 4, device=device).sort(-1).values * 224 for _ in range(2))
    rows += [("pair_min_iou triton", timed(lambda: pair_min_iou(bh, bo, gh, go_, "triton"))),
             ("pair_min_iou torch reference", timed(lambda: pair_min_iou(bh, bo, gh, go_, "torch")))]
    return rows


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="also benchmark on CUDA (with mixed precision) and the kernels")
    ap.add_argument("--only", choices=("world", "vit"), help="run only one of the two settings")
    ap.add_argument("--profile", default="default", help="preset of the world setting (default: default)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps per round (default: 8 world, 2 ViT on CPU, "
                                                         "20 on GPU)")
    ap.add_argument("--reps", type=int, default=0, help="alternating rounds per path (default: 3 world, 2 ViT)")
    ap.add_argument("--pairs", type=int, nargs="+", default=[30, 152],
                    help=f"pairs per image, of {sorted(PAIR_LAYOUTS)}")
    ap.add_argument("--batch-size", type=int, default=0, help="ViT batch size (default: 2 on CPU, 8 on GPU)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1, as the study's runs)")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child processes")
    ap.add_argument("--kept-ops", action="store_true",
                    help="world: also profile the fast training step's time in the operations an exact rewrite\n"
                         "keeps (GEMMs, attention, convolution, dropout masks) and print the speed-up they allow")
    ap.add_argument("--json", default="", help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    devices = [torch.device("cpu")]
    if args.gpu:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu: no CUDA device is available")
        devices.append(torch.device("cuda"))
    torch.set_num_threads(args.threads)
    results = []
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s)"
          + (f", GPU {torch.cuda.get_device_name(0)}" if args.gpu else ""))
    print("Locality Adapter per image and layer, ViT-B/16 (forward; the LA sees the 196 patches, never the pairs):")
    for r in la_estimate():
        print(f"  {r['pairs']:>3} pairs/img: LA {r['la_mflops']:6.1f} MFLOP ({r['la_kib']:5.0f} KiB, "
              f"{r['la_intensity']:4.1f} FLOP/B) = {100 * r['la_share']:4.2f}% of the layer's "
              f"{r['layer_mflops']:7.0f} MFLOP; IA decoders {100 * r['ia_share']:4.2f}%  -> no LA kernel")
    if not args.no_rss:
        # First, while this process is small: a child's getrusage peak starts at its parent's (kept across exec).
        settings = ([("world", args.threads)] if args.only in (None, "world") else []) + \
                   ([("vit:%d" % args.pairs[0], args.threads)] if args.only in (None, "vit") else [])
        for setting, threads in settings:
            ref, fast = peak_rss(setting, False, threads), peak_rss(setting, True, threads)
            for name, r in (("reference", ref), ("fast", fast)):
                print(f"{setting} {name}: RSS {r['rss_before']:.0f} MiB before the step, {r['rss_step_peak']:.0f} "
                      f"MiB peak during it (+{r['rss_step_peak'] - r['rss_before']:.0f}); getrusage peak "
                      f"{r['process_peak_before']:.0f} -> {r['process_peak']:.0f} MiB", flush=True)
            results.append(dict(setting=setting, rss_ref=ref, rss_fast=fast))
    for dev in devices:
        gpu = dev.type == "cuda"
        if args.only in (None, "world"):
            cfg = ExperimentConfig.from_preset(args.profile)
            results.append(bench_world(cfg, dev, steps=args.steps or (20 if gpu else 8), reps=args.reps or 3,
                                       amp=gpu))
            _print(results[-1])
            if args.kept_ops and not gpu:
                total, kept = world_kept_ops(cfg, args.steps or 8)
                ref_ms = 1e3 * results[-1]["batch_size"] / results[-1]["train_ref"]
                print(f"world train, fast path profiled: {total:.1f} ms/step, of which {sum(kept.values()):.1f} ms in "
                      f"operations an exact rewrite keeps (" + ", ".join(
                          f"{k.removeprefix('aten::')} {v:.1f}" for k, v in sorted(kept.items(), key=lambda kv: -kv[1]))
                      + f"); the reference step takes {ref_ms:.1f} ms: no exact fast path exceeds "
                        f"{ref_ms / sum(kept.values()):.2f}x", flush=True)
                results[-1].update(kept_ops_ms=kept, profiled_step_ms=total)
        if args.only in (None, "vit"):
            for n in args.pairs:
                results.append(bench_vit(dev, n, steps=args.steps or (20 if gpu else 2),
                                         batch_size=args.batch_size or (8 if gpu else 2), amp=gpu,
                                         reps=args.reps or 2, infer_steps=args.steps or (20 if gpu else 6)))
                _print(results[-1])
        if gpu:
            for name, ms in bench_kernels(dev):
                print(f"  kernel {name:<48} {ms:8.3f} ms", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


def _print(r: dict) -> None:
    name = f"{r['setting']} {r['device']}" + (" amp" if r["amp"] else "") + f" {r['threads']} thread" + \
        ("s" if r["threads"] > 1 else "")
    print(f"{name}: batch {r['batch_size']}, {r['pairs_per_image']:.1f} pairs/img; images/s train reference "
          f"{r['train_ref']:.2f} fast {r['train_fast']:.2f}; infer reference {r['infer_ref']:.2f} fast "
          f"{r['infer_fast']:.2f}")
    print(f"{name} train: speedup {r['train_fast'] / r['train_ref']:.2f}x")
    print(f"{name} infer: speedup {r['infer_fast'] / r['infer_ref']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
