"""The speed switches on the CPU (utils/training/speed.py, the lean step of utils/training/passes.py): uint8
batches, --compile, --deterministic, and the on-disk image cache (datasets/disk_cache.py)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import datasets
import datasets.common as common
from datasets import disk_cache
from losses.ema import class_means, ema_update
from tests import fakes
from tests.fakes import train_synthetic as run
from utils import record
from utils.training import passes, speed
from utils.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def outputs(run_dir, name=record.OUTPUTS_TEST):
    with np.load(os.path.join(run_dir, name), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def config(run_dir):
    with open(os.path.join(run_dir, record.CONFIG)) as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def eager_run(data_root, tmp_path_factory):
    return run(data_root, tmp_path_factory.mktemp("eager"))


# ------------------------------------------------------------------ the lean step
def test_ema_update_over_all_rows_equals_the_per_class_rule():
    g = torch.Generator().manual_seed(0)
    W = torch.nn.functional.normalize(torch.randn(6, 5, generator=g), dim=1)
    seen = torch.tensor([True, False, True, False, True, False])
    emb = torch.randn(9, 5, generator=g)
    labels = torch.tensor([0, 0, 1, 3, 3, 3, 4, 1, 0])
    expected = W.clone()
    for c in range(6):  # the rule written out class by class
        rows = labels == c
        if rows.any():
            m = torch.nn.functional.normalize(torch.nn.functional.normalize(emb[rows], dim=1).sum(0), dim=0)
            blend = torch.nn.functional.normalize(0.3 * m + 0.7 * W[c], dim=0)
            expected[c] = blend if seen[c] else m
    ema_update(W, seen, emb, labels, alpha=0.3)
    assert torch.allclose(W, expected, atol=1e-6)
    assert torch.equal(W[[2, 5]], expected[[2, 5]])  # classes 2 and 5 absent: untouched
    assert seen.tolist() == [True, True, True, True, True, False]


def test_deterministic_class_sums_equal_index_add():
    g = torch.Generator().manual_seed(1)
    f, y = torch.randn(40, 8, generator=g), torch.randint(0, 7, (40,), generator=g)
    y[y == 6] = 5  # class 6 empty
    sums, counts = class_means(f, y, 7, deterministic=False)
    sums_d, counts_d = class_means(f, y, 7, deterministic=True)
    assert torch.allclose(sums, sums_d, atol=1e-6) and torch.equal(counts, counts_d)
    assert counts_d[6] == 0 and torch.equal(sums_d[6], torch.zeros(8))
    assert torch.allclose(sums_d[2], torch.nn.functional.normalize(f[y == 2], dim=1).sum(0), atol=1e-6)


def test_uint8_items_converted_on_the_device_are_bit_identical(data_root):
    part = datasets.load_plankton(data_root, "synthetic").train
    view = speed.uint8_view(part)
    assert view is not part and view.yield_uint8 and not part.yield_uint8
    x8, y8, wh8 = view[3]
    x, y, wh = part[3]
    assert x8.dtype == torch.uint8 and x.dtype == torch.float32
    assert torch.equal(speed.to_device(x8[None], torch.device("cpu"))[0], x) and y8 == y and torch.equal(wh8, wh)
    part.transform = lambda t: t  # a transform works on floats: no uint8 view
    assert speed.uint8_view(part) is part


class _Boom(torch.nn.Module):
    """A network whose loss turns NaN from step ``bad`` on (counted in ``self.calls``)."""

    def __init__(self, bad):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.bad, self.calls = bad, 0

    def forward(self, x, wh=None):
        self.calls += 1
        f = self.lin(x)
        return f * float("nan") if self.calls == self.bad else f


def test_non_finite_loss_is_read_every_check_every_steps_naming_the_first_bad_step(monkeypatch):
    from losses.head import ClassHead

    monkeypatch.setattr(passes, "CHECK_EVERY", 4)
    torch.manual_seed(0)
    batches = [(torch.randn(3, 4), torch.tensor([0, 1, 2]), torch.ones(3, 2)) for _ in range(10)]
    model, head = _Boom(bad=2), ClassHead(3, 4)
    opt = torch.optim.Adam(list(model.parameters()) + head.main_parameters())
    with pytest.raises(FloatingPointError, match=r"^non-finite loss at epoch 7, step 2$"):
        passes.train_epoch(model, head, batches, opt, None, torch.device("cpu"), 7, 3)
    assert model.calls == 4  # the flag stays on the device until step 4
    model, head = _Boom(bad=10), ClassHead(3, 4)  # the last step: caught by the end-of-epoch read
    opt = torch.optim.Adam(list(model.parameters()) + head.main_parameters())
    with pytest.raises(FloatingPointError, match=r"step 10$"):
        passes.train_epoch(model, head, batches, opt, None, torch.device("cpu"), 1, 3)
    model = _Boom(bad=0)
    loss, acc, sums, counts = passes.train_epoch(model, ClassHead(3, 4), batches, torch.optim.Adam(model.parameters()),
                                                  None, torch.device("cpu"), 1, 3)
    assert np.isfinite(loss) and counts.tolist() == [10, 10, 10]


# ------------------------------------------------------------------ --compile
def test_compile_trains_like_eager_and_checkpoints_stay_interchangeable(data_root, eager_run, tmp_path):
    compiled = run(data_root, tmp_path / "compiled", "--compile")
    assert os.path.basename(compiled) == os.path.basename(eager_run)  # not in the run name
    assert config(compiled)["compile"] is True and config(eager_run)["compile"] is False
    a, b = outputs(eager_run), outputs(compiled)
    agree = np.mean(a["scores"].argmax(1) == b["scores"].argmax(1))
    assert agree >= 0.99, agree
    ck_e = torch.load(os.path.join(eager_run, record.CHECKPOINT_LAST), weights_only=True)
    ck_c = torch.load(os.path.join(compiled, record.CHECKPOINT_LAST), weights_only=True)
    assert list(ck_c["model"]) == list(ck_e["model"])
    assert not any("_orig_mod" in k for k in ck_c["model"])
    # an eager record resumes under --compile: the eager 1-epoch record as a 2-epoch run cut after epoch 1
    cut = os.path.join(tmp_path, "cut", os.path.basename(eager_run).replace("_ep1_", "_ep2_"))
    shutil.copytree(eager_run, cut)
    resumed = run(data_root, tmp_path / "cut", "--resume", "--compile", epochs=2)
    assert resumed == cut and list(record.load_history(resumed)["epoch"]) == [1, 2]


# ------------------------------------------------------------------ --deterministic
def test_deterministic_is_recorded_and_two_runs_are_bit_identical(data_root, tmp_path):
    flags = ["--deterministic", "--ema", "--dynamic"]
    first = run(data_root, tmp_path / "a", *flags)
    second = run(data_root, tmp_path / "b", *flags)
    assert not torch.are_deterministic_algorithms_enabled()  # the setting is restored after the run
    assert config(first)["deterministic"] is True and "determ" not in os.path.basename(first)
    a, b = outputs(first), outputs(second)
    assert sorted(a) == sorted(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def test_flags_in_help():
    proc = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "--compile" in proc.stdout and "--deterministic" in proc.stdout


# ------------------------------------------------------------------ disk cache
@pytest.fixture
def counted_decoding(monkeypatch):
    calls = {"decode": 0, "probe": 0}
    real_decode, real_probe = common.decode_image, common.probe_image

    def decode(*a, **k):
        calls["decode"] += 1
        return real_decode(*a, **k)

    def probe(*a, **k):
        calls["probe"] += 1
        return real_probe(*a, **k)

    monkeypatch.setattr(common, "decode_image", decode)
    monkeypatch.setattr(common, "probe_image", probe)
    return calls


def cache_files(folder):
    cache = os.path.join(folder, disk_cache.CACHE_FOLDER)
    return sorted(os.listdir(cache)) if os.path.isdir(cache) else []


def test_disk_cache_built_once_reused_and_rebuilt_when_the_resize_changes(tmp_path, counted_decoding):
    folder = fakes.write_fake_plankton(tmp_path)
    n = sum(fakes.FAKE_PLANKTON_CLASSES.values())
    memory = datasets.load_taxonomy_folder(folder, resize=12, seed=3, cache=True)
    counted_decoding["decode"] = 0
    first = datasets.load_taxonomy_folder(folder, resize=12, seed=3, cache="disk")
    assert counted_decoding["decode"] == n
    names = cache_files(folder)
    assert len(names) == 3 and [x.rsplit(".", 1)[-1] for x in names] == ["json", "npy", "u8"]
    assert os.path.getsize(os.path.join(folder, ".cache", names[2])) == n * 3 * 12 * 12
    second = datasets.load_taxonomy_folder(folder, resize=12, seed=3, cache="disk")
    assert counted_decoding == {"decode": n, "probe": 0}  # nothing decoded the second time
    for split in (first, second):
        assert torch.equal(split.train.cache, memory.train.cache)
        assert np.array_equal(split.train.sizes, memory.train.sizes)
        assert all(torch.equal(split.test[i][0], memory.test[i][0]) for i in range(len(memory.test)))
    from PIL import Image

    with Image.open(split.train.file(0)) as first_image:  # the original size of the first training item
        assert split.train[0][2].tolist() == list(first_image.size)
    # worker processes read the mapped cache
    loader = torch.utils.data.DataLoader(second.train, batch_size=5, num_workers=2)
    assert torch.equal(torch.cat([x for x, _, _ in loader]), torch.stack([memory.train[i][0] for i in range(len(memory.train))]))

    datasets.load_taxonomy_folder(folder, resize=10, seed=3, cache="disk")
    assert counted_decoding["decode"] == 2 * n  # a new resize: a new cache
    assert len(cache_files(folder)) == 6
    datasets.load_taxonomy_folder(folder, resize=10, seed=3, cache="disk")
    assert counted_decoding["decode"] == 2 * n


def test_disk_cache_rebuilt_when_an_image_changes_and_used_above_the_memory_limit(tmp_path, counted_decoding,
                                                                                monkeypatch):
    folder = fakes.write_fake_plankton(tmp_path)
    n = sum(fakes.FAKE_PLANKTON_CLASSES.values())
    monkeypatch.setattr(common, "CACHE_LIMIT_BYTES", 100)  # too large for memory: the default goes to disk
    split = datasets.load_taxonomy_folder(folder, resize=12)
    assert counted_decoding["decode"] == n and split.train.cache is not None and len(cache_files(folder)) == 3
    image = split.train.file(0)
    from PIL import Image

    Image.new("RGB", (7, 9), (255, 0, 0)).save(image, format="PNG" if image.endswith("png") else "JPEG")
    again = datasets.load_taxonomy_folder(folder, resize=12)
    assert counted_decoding["decode"] == 2 * n
    assert again.train[0][2].tolist() == [7, 9] and int(again.train[0][0][0].mean() * 255 + 0.5) >= 250


class Killed(BaseException):
    """Stands in for a kill (Ctrl-C, out of memory) in the middle of a build."""


def test_a_killed_build_leaves_no_cache_that_looks_complete(tmp_path, monkeypatch):
    folder = fakes.write_fake_plankton(tmp_path)
    real_decode, calls = common.decode_image, {"n": 0}

    def dies_midway(*a, **k):
        calls["n"] += 1
        if calls["n"] == 10:
            raise Killed  # not an image error: the build itself is interrupted
        return real_decode(*a, **k)

    monkeypatch.setattr(common, "decode_image", dies_midway)
    monkeypatch.setattr(common, "available_cpus", lambda: 1)
    with pytest.raises(Killed):
        datasets.load_taxonomy_folder(folder, resize=12, cache="disk")
    assert cache_files(folder) == []  # no manifest, no data, no temporary file
    # a bad image: a UserError, and again nothing left behind
    monkeypatch.setattr(common, "decode_image", real_decode)
    with open(os.path.join(folder, "Diatoms", "Coscinodiscus", "img_001.jpg"), "wb") as fh:
        fh.write(b"not a jpeg")
    with pytest.raises(UserError, match="img_001.jpg"):
        datasets.load_taxonomy_folder(folder, resize=12, cache="disk")
    assert cache_files(folder) == []


def test_a_cache_without_its_manifest_is_not_used(tmp_path, counted_decoding):
    folder = fakes.write_fake_plankton(tmp_path)
    n = sum(fakes.FAKE_PLANKTON_CLASSES.values())
    datasets.load_taxonomy_folder(folder, resize=12, cache="disk")
    manifest = [x for x in cache_files(folder) if x.endswith(".json")][0]
    os.remove(os.path.join(folder, ".cache", manifest))  # as if killed just before the manifest
    datasets.load_taxonomy_folder(folder, resize=12, cache="disk")
    assert counted_decoding["decode"] == 2 * n and manifest in cache_files(folder)


def test_bench_gpu_step_cpu_smoke():
    """The benchmark's own step and bare loop run on the CPU and print one table row with both timings."""
    proc = subprocess.run([sys.executable, "bench/bench_gpu_step.py", "--device", "cpu", "--backbone", "simple",
                           "--size", "16", "--steps", "2", "--repeats", "1", "--compile", "off", "--classes", "5"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| simple | 16 | eager |"))
    project_ms, bare_ms, ratio = (float(cell) for cell in row.strip("|").split("|")[3:6])
    # the times are printed to 0.1 ms and the ratio (of the unrounded times) to 0.01: it lies in the interval
    # the printed times allow
    low, high = (bare_ms - 0.05) / (project_ms + 0.05) - 0.005, (bare_ms + 0.05) / (project_ms - 0.05) + 0.005
    assert project_ms > 0 and bare_ms > 0 and low <= ratio <= high
