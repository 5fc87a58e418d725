#!/usr/bin/env python
"""The project's training step against a bare PyTorch loop, eager and ``--compile`` (the figures of the README, Performance, GPU).

Project: ``utils.training.passes.train_epoch`` itself (the trainer's loader over an
in-memory uint8 dataset, the uint8 -> float conversion on the device, the
device-side non-finite check, accuracy and prototype sums, the head's
``after_step``).  Bare loop: the same network (backbone without fc, Linear to
128) and head (ProxyDR score, cross-entropy), Adam, on random float tensors
already on the device.  Both are timed over whole epochs after a warm-up epoch
(compilation and CUDA-graph recording happen there); the figure is the median
ms/step over ``--repeats`` epochs.

    python bench/bench_gpu_step.py                               # CUDA: the issue's three shapes, eager and compiled
    python bench/bench_gpu_step.py --device cpu --backbone simple --size 32 --steps 5   # CPU smoke run
    python bench/bench_gpu_step.py --loader                      # the image loader alone, images/s (CPU)

Without CUDA (and without ``--device cpu``) it says so and exits 0.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasets.common import TensorImageDataset  # noqa: E402
from losses.head import ClassHead  # noqa: E402
from models.embedding import EmbeddingNet  # noqa: E402
from utils.training.passes import make_loader, train_epoch  # noqa: E402
from utils.training.speed import compile_model, uint8_view  # noqa: E402

CUDA_SHAPES = [("resnet50", 128), ("inception", 128), ("resnet50", 32)]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(backbone, n_classes, device, compiled, ema, dynamic):
    torch.manual_seed(0)
    model = EmbeddingNet(backbone, 3, pretrained=False).to(device)
    head = ClassHead(n_classes, 128, method="DR", ema=ema, dynamic=dynamic,
                     generator=torch.Generator().manual_seed(1)).to(device)
    opt = torch.optim.Adam(list(model.parameters()) + head.main_parameters(), lr=1e-4)
    scale_opt = torch.optim.Adam([head.log_s], lr=1e-4) if dynamic else None
    net = compile_model(model, device) if compiled else model
    return net, head, opt, scale_opt


def project_ms(args, backbone, size, device, compiled):
    n = args.batch_size * args.steps
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, args.classes, (n,), generator=g).numpy()
    sizes = np.full((n, 2), float(size), dtype=np.float32)
    data = TensorImageDataset(images, labels, sizes, np.arange(n))
    net, head, opt, scale_opt = build(backbone, args.classes, device, compiled, args.ema, args.dynamic)
    times = []
    for epoch in range(args.repeats + 1):
        loader = make_loader(uint8_view(data), args.batch_size, True, 0, device, epoch)
        sync(device)
        t0 = time.perf_counter()
        train_epoch(net, head, loader, opt, scale_opt, device, epoch + 1, args.classes)
        sync(device)
        if epoch:  # the first epoch warms up (and compiles)
            times.append((time.perf_counter() - t0) * 1000 / args.steps)
    return statistics.median(times)


def bare_ms(args, backbone, size, device, compiled):
    net, head, opt, _ = build(backbone, args.classes, device, compiled, False, False)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch_size, 3, size, size, generator=g).to(device)
    y = torch.randint(0, args.classes, (args.batch_size,), generator=g).to(device)
    net.train()
    times = []
    for epoch in range(args.repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            if compiled and device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            loss = head.loss(net(x), y)[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        if epoch:
            times.append((time.perf_counter() - t0) * 1000 / args.steps)
    return statistics.median(times)


def bench_steps(args, device):
    shapes = CUDA_SHAPES if args.backbone is None else [(args.backbone, args.size)]
    modes = [False, True] if args.compile is None else [args.compile == "on"]
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# {what}, torch {torch.__version__}, batch {args.batch_size}, {args.steps} steps x {args.repeats} epochs, "
          f"fp32, C={args.classes}" + (" --ema" if args.ema else "") + (" --dynamic" if args.dynamic else ""))
    print("| backbone | px | mode | project ms/step | bare ms/step | bare / project | project speed-up vs eager |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for backbone, size in shapes:
        eager = None
        for compiled in modes:
            p = project_ms(args, backbone, size, device, compiled)
            b = bare_ms(args, backbone, size, device, compiled)
            eager = p if not compiled else eager
            gain = f"{eager / p:.2f}x" if eager is not None else "-"
            print(f"| {backbone} | {size} | {'compile' if compiled else 'eager'} | {p:.1f} | {b:.1f} | {b / p:.2f} | "
                  f"{gain} |", flush=True)


def bench_loader(args):
    """Images/s of the loader alone: decoding files every epoch vs the on-disk uint8 cache."""
    from PIL import Image

    from datasets import load_taxonomy_folder

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        folder = os.path.join(tmp, "set")
        for c in range(8):
            os.makedirs(os.path.join(folder, f"class{c}"))
        for i in range(args.images):
            pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"class{i % 8}", f"{i:05d}.jpg"), quality=90)

        def epoch_rate(part, workers):  # the faster of two epochs (the second reads a warm page cache)
            rates = []
            for epoch in range(2):
                loader = make_loader(uint8_view(part), args.batch_size, True, workers,
                                         torch.device("cpu"), epoch)
                t0 = time.perf_counter()
                n = sum(len(y) for _, y, _ in loader)
                rates.append(n / (time.perf_counter() - t0))
            return max(rates)

        print(f"# loader alone, {args.images} JPEGs of 400x300 -> {args.size} px, batch {args.batch_size}, "
              f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs")
        t0 = time.perf_counter()
        cached = load_taxonomy_folder(folder, resize=args.size, use_val=False, seed=0, cache="disk")
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cached = load_taxonomy_folder(folder, resize=args.size, use_val=False, seed=0, cache="disk")
        reopen_s = time.perf_counter() - t0
        lazy = load_taxonomy_folder(folder, resize=args.size, use_val=False, seed=0, cache=False)
        print(f"disk cache: built in {build_s:.2f} s ({args.images / build_s:.0f} images/s, all CPUs), "
              f"reopened in {reopen_s:.3f} s")
        print("| source | workers | images/s |")
        print("|---|---:|---:|")
        for workers in (0, args.workers):
            print(f"| disk cache (memory-mapped uint8) | {workers} | {epoch_rate(cached.train, workers):.0f} |",
                  flush=True)
            print(f"| decode JPEG every epoch | {workers} | {epoch_rate(lazy.train, workers):.0f} |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    p.add_argument("--backbone", default=None, help="one backbone instead of the issue's three shapes")
    p.add_argument("--size", type=int, default=32, help="image side with --backbone or --loader (default 32)")
    p.add_argument("--compile", choices=["on", "off"], default=None, help="only one mode (default: both)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=50, help="steps per timed epoch (default 50)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs after the warm-up (default 3)")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--ema", action="store_true", help="the project's step with --ema")
    p.add_argument("--dynamic", action="store_true", help="the project's step with --dynamic")
    p.add_argument("--loader", action="store_true", help="time the image loader alone instead")
    p.add_argument("--images", type=int, default=512, help="--loader: number of JPEGs (default 512)")
    p.add_argument("--workers", type=int, default=2, help="--loader: DataLoader workers to compare with 0")
    args = p.parse_args(argv)
    if args.loader:
        bench_loader(args)
        return 0
    if args.device is None:
        if not torch.cuda.is_available():
            print("CUDA is not available here: nothing to measure "
                  "(for a CPU smoke run: --device cpu --backbone simple --size 32 --steps 5)")
            return 0
        args.device = "cuda"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available here: nothing to measure")
        return 0
    bench_steps(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
