#!/usr/bin/env python
"""Time per training step of every method/option head against plain cross-entropy.

The same backbone, batch and data for all; each step is forward, loss, backward,
Adam step and the head's ``after_step`` (EMA update, dynamic-scale step).  Heads
are timed round-robin (so drift of the machine hits all alike) and the median
step time is reported, together with the head alone (loss + backward +
after_step on fixed embeddings), which isolates what the head costs.

    python bench/bench_heads.py                      # resnet18, 64 px, batch 32, C=100, CPU
    python bench/bench_heads.py --device cuda --backbone resnet50 --size 128
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from losses.head import ClassHead  # noqa: E402
from losses.mds import fit_mds  # noqa: E402
from models.embedding import EmbeddingNet  # noqa: E402
from utils.hierarchy import Hierarchy  # noqa: E402

HEADS = {
    "plain CE (Linear + cross-entropy)": None,
    "softmax": dict(method="softmax"),
    "NormFace euc": dict(method="normface"),
    "NormFace arccos": dict(method="normface", distance="arccos"),
    "ProxyDR euc": dict(method="DR"),
    "ProxyDR arccos": dict(method="DR", distance="arccos"),
    "ProxyDR + EMA": dict(method="DR", ema=True),
    "ProxyDR + dynamic": dict(method="DR", dynamic=True),
    "ProxyDR arccos + dynamic": dict(method="DR", distance="arccos", dynamic=True),
    "NormFace + dynamic": dict(method="normface", dynamic=True),
    "ProxyDR + MDS + CORR": dict(method="DR", mds=True, corr=True),
    "ProxyDR + clspri + EMA + dynamic": dict(method="DR", clspri=True, ema=True, dynamic=True),
}


class PlainCE(nn.Module):
    """The reference: a linear classifier and cross-entropy, nothing else."""

    def __init__(self, C, dim):
        super().__init__()
        self.fc = nn.Linear(dim, C)

    def step_loss(self, f, y):
        return F.cross_entropy(self.fc(f), y)


def make(spec, C, dim, hierarchy, device):
    if spec is None:
        return PlainCE(C, dim).to(device)
    spec = dict(spec)
    fixed = None
    if spec.pop("mds", False):
        fixed, _, _ = fit_mds(hierarchy.transformed_distances(spec.get("distance", "euc")), dim, steps=50)
    prior = torch.full((C,), 1.0 / C) if spec.pop("clspri", False) else None
    return ClassHead(C, dim, fixed_W=fixed, class_prior=prior, **spec).to(device)


def one_step(model, head, opt, scale_opt, x, y, wh):
    f = model(x, wh)
    if isinstance(head, PlainCE):
        loss = head.step_loss(f, y)
    else:
        loss, z, cos = head.loss(f, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if not isinstance(head, PlainCE):
        head.after_step(f.detach(), z, cos, y, scale_opt)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=4, help="timed steps per head per round")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    C = args.classes
    # a 3-level tree of C classes (for MDS): 5 groups, 20 below them, then the classes
    paths = [[f"a{i % 5}", f"b{i % 20}", f"c{i}"] for i in range(C)]
    hierarchy = Hierarchy([p[-1] for p in paths], paths)
    x = torch.rand(args.batch_size, 3, args.size, args.size, device=device)
    y = torch.randint(0, C, (args.batch_size,), device=device)
    wh = torch.full((args.batch_size, 2), float(args.size), device=device)

    runs = {}
    for name, spec in HEADS.items():
        torch.manual_seed(0)
        model = EmbeddingNet(args.backbone, 3, pretrained=False).to(device)
        head = make(spec, C, 128, hierarchy, device)
        params = list(model.parameters()) + (list(head.parameters()) if spec is None else head.main_parameters())
        opt = torch.optim.Adam(params, lr=1e-4)
        scale_opt = torch.optim.Adam([head.log_s], lr=1e-4) if spec and spec.get("dynamic") else None
        for _ in range(2):  # warm-up
            one_step(model, head, opt, scale_opt, x, y, wh)
        runs[name] = (model, head, opt, scale_opt, [], [])

    f_fixed = torch.randn(args.batch_size, 128, device=device)
    for _ in range(args.rounds):
        for name, (model, head, opt, scale_opt, times, head_times) in runs.items():
            for _ in range(args.steps):
                sync(device)
                t0 = time.perf_counter()
                one_step(model, head, opt, scale_opt, x, y, wh)
                sync(device)
                times.append(time.perf_counter() - t0)
                # the head alone, on fixed embeddings
                f = f_fixed.clone().requires_grad_(True)
                sync(device)
                t0 = time.perf_counter()
                if isinstance(head, PlainCE):
                    head.step_loss(f, y).backward()
                else:
                    loss, z, cos = head.loss(f, y)
                    loss.backward()
                    head.after_step(f.detach(), z, cos, y, scale_opt)
                sync(device)
                head_times.append(time.perf_counter() - t0)

    base = statistics.median(next(iter(runs.values()))[4])
    print(f"backbone {args.backbone}, {args.size}x{args.size}, batch {args.batch_size}, C={C}, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.rounds * args.steps} steps")
    print()
    print("| head | step (ms) | vs plain CE | head alone (ms) |")
    print("|---|---:|---:|---:|")
    for name, (_, _, _, _, times, head_times) in runs.items():
        step = statistics.median(times)
        print(f"| {name} | {1000 * step:.1f} | {100 * (step / base - 1):+.1f}% | {1000 * statistics.median(head_times):.2f} |")


if __name__ == "__main__":
    main()
