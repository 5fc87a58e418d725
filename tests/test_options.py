"""utils/options.py: one table gives run-name tags, summary labels and the report's grouping."""
import pytest

from utils import options


def config(**changes):
    base = dict(dataset="MicroS", backbone="inception", method="DR", distance="euc", seed=1, lr=1e-4,
                lr_default=1e-4, epochs=50, epochs_default=50, batch_size=32, batch_size_default=32, resize=128,
                resize_default=128, gray=False, gray_default=False, alpha=0.01, beta=1.0)
    return dict(base, **changes)


@pytest.mark.parametrize("changes, tags, label", [
    ({}, [], "-"),
    ({"ema": True, "alpha": 0.05}, ["ema0.05"], "ema+alpha=0.05"),
    ({"mds_W": True, "beta": 2.0, "CORR": True}, ["mds2", "corr"], "mds_W+beta=2.0+CORR"),
    ({"dynamic": True, "scale_update": "paper_code"}, ["dnm", "sucode"], "dynamic+scale_update=paper_code"),
    ({"scale_update": "paper_code"}, [], "-"),  # without --dynamic it changes nothing
    ({"epochs": 0}, ["ep0"], "untrained"),
    ({"epochs": 7, "lr": 2.5e-4, "batch_size": 16}, ["lr2.5e-4", "bs16", "ep7"], "lr=2.5e-4+batch_size=16+epochs=7"),
    ({"gray": True, "gray_default": True, "resize": 64}, ["r64"], "resize=64"),
    ({"rand_backbone": True, "size_inform": True, "use_val": True}, ["rand", "size", "val"],
     "rand_backbone+size_inform+use_val"),
])
def test_tags_and_labels_come_from_the_same_rows(changes, tags, label):
    c = config(**changes)
    assert options.option_tags(c) == tags
    assert options.options_label(c) == label
    assert options.run_name(c) == "_".join(["MicroS_inception_DR_euc", *tags, "seed1"])


def test_records_without_recorded_defaults():
    assert options.options_label({"lr": 1e-4, "epochs": 7, "batch_size": 32}) == "-"
    assert options.options_label({"lr": 1e-3, "epochs": 0}) == "lr=1e-3+untrained"
    assert options.option_tags({"epochs": 0}) == []  # no default recorded: no tag


def test_grid_rows_and_variants():
    assert options.grid_row(config()) == "standard"
    assert options.grid_row(config(ema=True, dynamic=True)) == "ema+dnm"
    assert options.grid_row(config(mds_W=True, CORR=True, dynamic=True)) == "corr"
    assert options.grid_row(config(clspri=True)) == "standard"
    assert options.variant_label(config(clspri=True)) == "euc, clspri"
    assert options.variant_label(config(distance="arccos")) == "arccos, -"
    assert options.variant_label(config(ema=True, epochs=0)) == options.variant_label(config()) == "euc, -"
    with pytest.raises(ValueError, match="unknown option"):
        options.options_label(config(), skip=("nope",))
    assert options.float_tag(0.001) == "1e-3" and options.float_tag(2.5e-4) == "2.5e-4" and options.float_tag(1) == "1e0"
