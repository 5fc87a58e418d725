"""The speed switches of a training run: uint8 batches converted on the device, ``--compile``, ``--deterministic``.

None of them changes a result on the CPU (``--compile`` and ``--deterministic`` are recorded in config.json and
left out of the run name).
"""
import contextlib
import os

import torch

from datasets.common import ImageFileDataset, TensorImageDataset, to_float


def uint8_view(dataset):
    """The same split yielding uint8 images, converted on the training device by :func:`to_device`.

    Only for in-memory or on-disk images with no transform and no resize (the
    conversion is then the same elementwise ``to_float``, so results are
    bit-identical); other datasets are returned as they are.
    """
    if not isinstance(dataset, (ImageFileDataset, TensorImageDataset)) or dataset.transform is not None:
        return dataset
    if isinstance(dataset, TensorImageDataset) and dataset.resize is not None \
            and tuple(dataset.images.shape[-2:]) != (dataset.resize, dataset.resize):
        return dataset
    return dataset.uint8_view()


def to_device(x, device):
    """A batch of images on ``device`` (non-blocking), uint8 converted to float there."""
    x = x.to(device, non_blocking=True)
    return to_float(x) if x.dtype == torch.uint8 else x


def compile_model(model, device):
    """``--compile``: the network under ``torch.compile``; the head, EMA and scale stay eager.

    CUDA: ``mode="reduce-overhead"`` (CUDA-graph replay; the last, smaller batch
    of an epoch records its own graph).  CPU: the ``aot_eager`` backend (traced,
    no code generation: inductor's C++ build is slow on a few cores and buys
    little there).  ``dynamic=False``: one graph per batch shape.  Checkpoints
    always hold the uncompiled module's state (no ``_orig_mod.`` prefix).
    """
    if device.type == "cuda":
        compiled = torch.compile(model, mode="reduce-overhead", dynamic=False)
    else:
        compiled = torch.compile(model, backend="aot_eager", dynamic=False)
    compiled.cuda_graphs = device.type == "cuda"
    return compiled


@contextlib.contextmanager
def deterministic_mode(on):
    """``--deterministic``: deterministic kernels, cuDNN benchmark off, the cuBLAS workspace setting.

    The previous settings come back afterwards (tests train in one process).
    """
    if not on:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read by cuBLAS: set before it starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]
        if before[3] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
