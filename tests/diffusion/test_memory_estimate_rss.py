"""The memory estimate against the resident memory a short run really takes on the CPU (issue 24), for the tiny
SD 1.5 model.

Growth, not absolute size: each run is a fresh interpreter that imports every library first and resets its peak
(``bench/rss_growth.py``), and the comparison is between two runs that differ only in the batch — so the fixed costs
(libraries, the pipeline's modules, tokenizers, the final preview, the allocator's arenas), which on a model of a
million parameters are several times its tensors, cancel, and what is left is what the estimate models per sample:
the activations.

Tolerance: a factor of 2 either way.  The activation constant is fitted to full-size SD 1.5 (±30 % there) and
scaled by √(parameters) down to a UNet 800 times smaller; measured here: the estimate is 1.4× the growth.  The same
check on the tiny Flux is a bench row, not a test (``bench/bench_estimate_rss.py``): its estimate misses the 512
text tokens of the joint attention, so at 128 px it is 0.3–0.4× the growth and at 384 px 3×.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.diffusion.conftest import draw_shapes

SIDE = 128  # large enough for the activations to stand out of the allocator's noise (a few MB run to run)


def rss_growths(model: Path, dataset: Path, work: Path, arch: str, batches: tuple[int, ...]) -> list[dict]:
    """One fresh run per batch size, side by side (each process measures only itself)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "KAMAAL_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-m", "bench.rss_growth", str(model), str(dataset),
                              str(work / f"batch-{batch}"), arch, str(batch), str(SIDE)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=REPO, env=env) for batch in batches]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak resident size (VmHWM) of Linux")
def test_the_estimated_growth_with_the_batch_is_within_2x_of_the_measured_rss_growth(tmp_path, tiny_sd15):
    dataset = draw_shapes(tmp_path / "data", 8, size=(SIDE, SIDE))
    one, eight = rss_growths(tiny_sd15, dataset, tmp_path, "sd15", (1, 8))
    estimated = eight["estimate"]["activations"] - one["estimate"]["activations"]
    # Only the activations depend on the batch in the estimate: the weights, gradients and optimizer are the same.
    assert {k: v for k, v in one["estimate"].items() if k != "activations"} == \
        {k: v for k, v in eight["estimate"].items() if k != "activations"}
    measured = eight["growth_bytes"] - one["growth_bytes"]
    assert measured > 20 * 2**20, (one, eight)  # the batch's memory shows, well above the noise
    assert 0.5 <= estimated / measured <= 2.0, (estimated / 2**20, measured / 2**20)
