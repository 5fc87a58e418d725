"""The Makefile's targets, as `make -n` prints them (nothing is run)."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned(*args):
    # --no-print-directory: under `make test` this make is nested and would add "Entering directory" lines
    result = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def report_command(lines):
    return next(line for line in lines if "tools/results_synthetic.py" in line)


def test_reproduce_rewrites_the_tracked_report_only_with_the_papers_five_seeds():
    full = report_command(planned("reproduce"))
    assert "--out docs/results_synthetic.md" in full and "--figures docs/figures" in full
    assert "--readme README.md" in full
    for seeds in ("1", "1-3", "2,4"):
        partial = report_command(planned("reproduce", f"SEEDS={seeds}"))
        assert f"--out record/results_synthetic_seeds{seeds}.md" in partial
        assert "docs/" not in partial and "--readme" not in partial
        assert f"--figures record/figures_seeds{seeds}" in partial


def test_demo_ends_with_the_readmes_caution():
    last = planned("demo")[-1]
    assert last.startswith("echo ")
    caution = last[len("echo "):].strip('"')
    readme = " ".join(open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().split()).replace("`", "")
    assert "not a finding" in caution and caution.rstrip(".").lower() in readme.lower()
