"""Fixtures shared by the test modules: the synthetic demo set and one trained miniature grid."""
import os

import pytest

#: The miniature grid: NormFace and ProxyDR, seed 1, 2 epochs at 16 px on the synthetic demo set.
MINI_GRID = ["--seeds", "1", "--only", "normface,DR", "--extra", "--epochs 2 --resize 16"]
MINI_GRID_RUNS = [f"synthetic_simple_{m}_euc_rand_r16_ep2_val_seed1" for m in ("normface", "DR")]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """The synthetic demo set, generated once per test session."""
    from datasets import ensure_synthetic

    root = tmp_path_factory.mktemp("data")
    ensure_synthetic(str(root), name="synthetic")
    return str(root)


@pytest.fixture(scope="session")
def mini_grid(tmp_path_factory, data_root):
    """``grid.py synthetic`` with :data:`MINI_GRID`, trained once: ``(record folder, exit status, printed text)``.

    Tests that change the folder copy it first (``shutil.copytree``)."""
    import contextlib
    import io

    import grid

    rec = str(tmp_path_factory.mktemp("mini_grid") / "rec")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = grid.main(["synthetic", *MINI_GRID, "--data_root", data_root, "--record_dir", rec, "--gpus", "cpu"])
    assert all(os.path.isdir(os.path.join(rec, name)) for name in MINI_GRID_RUNS)
    return rec, rc, out.getvalue()
