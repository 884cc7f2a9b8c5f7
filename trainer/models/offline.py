"""Keep the Hugging Face libraries off the network: Kamaal loads models only from local files.

The libraries read ``HF_HUB_OFFLINE`` once, when first imported, so setting the environment variable
is not enough once they are loaded; the module-level flags they copied it into are set as well.
Every loading function calls ``force_offline()`` first and passes ``local_files_only=True`` too.
"""

from __future__ import annotations

import os
import sys

_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "DIFFUSERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "DISABLE_TELEMETRY": "1"}
# (module, attribute) pairs that hold a copy of the offline flag once imported.
_FLAGS = (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("diffusers.utils.hub_utils", "HF_HUB_OFFLINE"),
          ("huggingface_hub.constants", "HF_HUB_DISABLE_TELEMETRY"),
          ("diffusers.utils.hub_utils", "HF_HUB_DISABLE_TELEMETRY"))


def force_offline() -> None:
    """Switch the hub libraries to offline mode for the rest of this process (idempotent)."""
    os.environ.update(_ENV)
    for module_name, attribute in _FLAGS:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attribute):
            setattr(module, attribute, True)
