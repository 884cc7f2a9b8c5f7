"""The house rule: the dataset library is light enough for the GUI process (no torch, no Qt)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "PySide6", "pyqtgraph", "diffusers", "transformers", "peft", "accelerate", "safetensors")


def test_importing_the_dataset_library_loads_neither_torch_nor_qt() -> None:
    # Nor libheif: the GUI process imports the library but decodes nothing, so the HEIC opener waits
    # for the first image opened (in a worker process, the trainer or the CLI).
    code = (
        "import json, sys\n"
        "import trainer.dataset, trainer.dataset.cli\n"
        "from trainer.dataset import check_dataset, load_rgb\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {(*HEAVY, 'pi_heif')!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == []
