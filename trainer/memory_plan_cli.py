"""``kamaal-train plan CONFIG [--vram 12GB] [--ram 32GB] [--write OUT.toml]``: the memory plan on the terminal.

Plans for this machine (detected: the GPU's free memory, the computer's memory) or for any other one given by
``--vram``/``--ram`` — so a person can plan for a machine they do not have.  Light to import: torch loads only
to detect what was not given.  Exit codes: 0 a plan that fits (written where asked), 1 nothing fits (the
smallest plan is printed, nothing written), 2 bad input.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from trainer.config import load_config, save_config
from trainer.errors import InputError
from trainer.memory_plan import GB, DeviceFacts, gb, plan_memory

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(gb|gib|g|mb|mib|m|tb|tib|t)?\s*$", re.IGNORECASE)
_UNITS = {"g": GB, "m": 1024**2, "t": 1024**4}


def parse_size(text: str, option: str) -> int:
    """"12GB", "12 GiB", "12g", "16000MB" or a bare number of GB, in bytes (GB counted as GiB, as cards are sold)."""
    match = _SIZE.match(text)
    if not match:
        raise InputError(f"{option}: {text!r} is not a size (write it as 12GB, 16000MB or 0 for no GPU)")
    unit = (match.group(2) or "g")[0].lower()
    return int(float(match.group(1)) * _UNITS[unit])


def count_images(config: Any) -> int:
    """How many images the dataset's folders hold (0 where a folder is not set or not there)."""
    from trainer.dataset.scan import list_images

    total = 0
    for folder in [config.dataset.path, *(concept.path for concept in config.concepts)]:
        try:
            total += len(list_images(Path(folder), caption_extension=config.dataset.caption_extension).items) \
                if folder else 0
        except OSError:
            continue  # a folder that is not there: its caches are not counted (the plan says the size is unknown)
    return total


def cmd_plan(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config), args.set or [])
    vram = parse_size(args.vram, "--vram") if args.vram is not None else None
    ram = parse_size(args.ram, "--ram") if args.ram is not None else None
    free = None
    if vram is None or ram is None:
        from trainer.tasks.measure import machine_facts  # torch: only to detect what was not given

        facts = machine_facts()
        if vram is None:
            vram, free = (facts["total_bytes"], facts["free_bytes"]) if facts["cuda"] else (0, None)
            print(f"Detected: {facts['name']}" + (f", {gb(vram)} ({gb(free)} free)" if facts["cuda"] else ""))
        if ram is None:
            ram = facts["ram_bytes"]
            print(f"Detected: {gb(ram)} of RAM, {facts['cpu_count']} CPU cores")
    parameters = None
    if args.model_sizes and config.model.path:
        from trainer.model_sizes import count_parameters

        parameters = count_parameters(Path(config.model.path)) or None
    plan = plan_memory(config, DeviceFacts(vram_total=vram, ram=ram, vram_free=free), parameters,
                       count_images(config))
    print(plan.describe())
    if plan.changes:
        print("Changes to the config:")
        for key, value in plan.changes.items():
            print(f"  {key} = {value!r}")
    else:
        print("The config is already the plan.")
    if not plan.fits:
        return 1
    if args.write:
        save_config(plan.config, Path(args.write))
        print(f"Wrote the planned config to {args.write}")
    return 0


def add_plan_parser(commands: Any) -> None:
    plan = commands.add_parser(
        "plan", help="the fastest memory plan that fits a GPU ('Make it fit')",
        description="Plan the memory options of CONFIG (precision, base quantization, block swap, gradient "
                    "checkpointing, text encoders off the GPU, caches, batch size with gradient accumulation "
                    "keeping the effective batch) for the fastest run that fits, by Kamaal's memory estimate with "
                    "a 5 %% margin and the CUDA context, and say why each choice was made. Exit code 1 when "
                    "nothing fits (the smallest plan is printed).")
    plan.add_argument("config", metavar="CONFIG.toml", help="config file to plan for")
    plan.add_argument("--vram", metavar="SIZE",
                      help="the GPU's memory, e.g. 12GB (0 = no GPU; default: this machine's GPU, its free memory)")
    plan.add_argument("--ram", metavar="SIZE", help="the computer's memory, e.g. 32GB (default: this machine's)")
    plan.add_argument("--write", metavar="OUT.toml", help="write the planned config there (when it fits)")
    plan.add_argument("--set", metavar="KEY=VALUE", action="append",
                      help="override a config value before planning, e.g. --set dataset.resolution=768 (repeatable)")
    plan.add_argument("--model-sizes", action="store_true",
                      help="count the parameters of model.path from its file headers instead of assuming the "
                           "family's reference model (for a smaller or larger variant)")
    plan.set_defaults(handler=cmd_plan)
