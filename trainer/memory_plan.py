""""Make it fit": the fastest set of memory options under which a config fits a given machine.

Light (standard library + config + the estimate): a pure function of (device facts, the config, the model's sizes),
so ``kamaal-train plan`` can plan for a machine a person does not have, and tests can check it on any hardware.

What the plan may change (everything else — family, model, mode, resolution, rank, optimizer, learning rate, the
effective batch — is the person's choice and stays):

    model.precision             fp32 → auto (mixed bf16/fp16) on a GPU
    model.base_quantization     none / fp8 / int8 / nf4   (LoRA, DreamBooth-LoRA and embedding runs)
    model.blocks_to_swap        0 … the family's block count (with gradient checkpointing)
    model.text_encoder_device   gpu / cpu (off the GPU once the captions are encoded; when they can be cached)
    model.text_encoder_quantization   none / fp8 / nf4   (families whose encoders declare blocks)
    training.gradient_checkpointing
    training.batch_size × training.gradient_accumulation_steps   (their product, the effective batch, kept)
    dataset.cache_latents       memory / disk   (when latents are cached at all)
    dataset.cache_text          on / disk       (when captions are cached at all)

**Fits** means: the estimate (``trainer/memory_estimate.py``; times the calibration Measure found, when there is
one) ≤ the GPU's memory (its free memory where that is smaller) × (1 − ``SAFETY_MARGIN``) − ``CUDA_CONTEXT``, and the
RAM the run holds (``ram_need``) ≤ the computer's memory × ``RAM_SHARE``.  On a machine without a CUDA GPU the CPU
estimate must fit the RAM budget.

**Fastest** is by a cost model of the time per effective batch, relative to the plain run (1.0), a product of::

    gradient checkpointing        × 1.3    (the forward pass runs twice for the checkpointed blocks)
    base quantization             × 1.1 fp8, × 1.15 int8, × 1.3 nf4   (dequantized per layer, every pass)
    block swap                    × (1 + 0.8 × swapped / block count)  (PCIe copies in and out, forward and
                                                                       recomputation; partly hidden behind compute)
    micro-batches                 × (accumulation steps)^0.15         (a GPU does b samples in less than b × one)
    mixed precision off (fp32)    × 2
    text encoders quantized       × 1.005 fp8, × 1.0075 int8, × 1.01 nf4   (they run once; the small price is for
                                                                            the conditioning that moves)
    cache on disk                 × 1.02 each (latents, captions: read back every step)

The factors are round numbers from what trainers report (kohya, OneTrainer, musubi-tuner), not measurements of
this machine; Measure gives the truth for one plan.  Among plans of equal cost, the one with the least GPU memory
wins (headroom is safety).  Text encoders waiting in RAM cost nothing per step, so they leave the GPU whenever
the RAM allows.

RAM the run holds (``ram_need``): the process (Python, torch, the CUDA libraries: ``RAM_PROCESS``), the text
encoders while they wait off the GPU, the swapped blocks' frozen weights, and the caches kept in memory (latents:
``LATENT_BYTES_PER_PIXEL`` per latent pixel per image, 16 channels in fp32 — the widest common VAE; captions:
``TEXT_CACHE_BYTES`` per image, T5-XXL's 512 × 4096 in bf16 — an upper bound).  Without the dataset's image count
the caches are not counted (and the plan says so).  Loading the model (a passage through RAM on the way to the GPU)
is not counted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from trainer import families
from trainer.config import Config, config_from_dict
from trainer.memory_estimate import GB, QUANTIZED_BYTES, estimate_memory, text_encoders_leave_gpu

SAFETY_MARGIN = 0.05  # of the GPU's memory: the allocator's fragmentation and what the estimate misses
CUDA_CONTEXT = int(0.5 * GB)  # the driver's context, not in what CUDA reports as allocated
RAM_SHARE = 0.85  # of the computer's memory: the rest for the system and the app's window
RAM_PROCESS = 3 * GB  # Python, torch and the CUDA libraries, resident
LATENT_BYTES_PER_PIXEL = 16 * 4  # 16 channels, fp32
TEXT_CACHE_BYTES = 512 * 4096 * 2

CHECKPOINTING_COST = 1.3
QUANTIZATION_COST = {"none": 1.0, "fp8": 1.1, "int8": 1.15, "nf4": 1.3}
TEXT_QUANTIZATION_COST = {"none": 1.0, "fp8": 1.005, "int8": 1.0075, "nf4": 1.01}
FULL_SWAP_COST = 0.8
MICRO_BATCH_EXPONENT = 0.15
FP32_COST = 2.0
DISK_CACHE_COST = 1.02


@dataclass(frozen=True)
class DeviceFacts:
    """The machine to plan for.  ``vram_total`` 0: no CUDA GPU (training runs on the CPU)."""

    vram_total: int
    ram: int
    vram_free: int | None = None  # None: all of it (a machine planned for, not measured)
    cpus: int = 1

    @property
    def cuda(self) -> bool:
        return self.vram_total > 0

    @property
    def vram_budget(self) -> int:
        usable = self.vram_total if self.vram_free is None else min(self.vram_free, self.vram_total)
        return int(usable * (1 - SAFETY_MARGIN)) - CUDA_CONTEXT

    @property
    def ram_budget(self) -> int:
        return int(self.ram * RAM_SHARE)


@dataclass(frozen=True)
class MemoryPlan:
    """A plan: the planned config, what it needs and has, and a sentence per choice."""

    fits: bool
    config: Config  # the planned config (the smallest plan when nothing fits)
    vram_need: int  # the estimate (on the CPU: 0, the need is RAM)
    vram_budget: int
    ram_need: int
    ram_budget: int
    relative_time: float  # by the cost model: 1.0 = the plain run
    reasons: tuple[str, ...] = field(default=())
    changes: dict[str, Any] = field(default_factory=dict)  # "section.field" → planned value, where it differs

    def describe(self) -> str:
        gpu = f"{gb(self.vram_need)} of GPU memory (this card leaves {gb(self.vram_budget)} for training) and " \
            if self.vram_budget > 0 else ""
        needs = f"{gpu}{gb(self.ram_need)} of RAM (this computer leaves {gb(self.ram_budget)})"
        head = f"Fits: {needs}; step time ×{self.relative_time:.2f} of the plain run." if self.fits else \
            f"Does not fit: even the smallest plan needs {needs}."
        return "\n".join([head, *(f"- {reason}" for reason in self.reasons)])


def gb(count: float) -> str:
    return f"{count / GB:.1f} GB"


# The options, each with its values from fastest to slowest: (field path, values).
Options = dict[str, tuple[Any, ...]]


def option_space(config: Config, device: DeviceFacts, images: int = 0) -> Options:
    """What the plan may choose for this config on this device, fastest first (one value: the option stays as the
    person set it)."""
    model_family = families.family(config.model.architecture)
    facts = model_family.memory
    effective = config.training.batch_size * config.training.gradient_accumulation_steps
    stores_base = device.cuda and (config.trains_adapter() or config.mode == "embedding")
    cacheable_text = (device.cuda and not config.trains_text() and not config.caption_variation().varies_text
                      and config.dataset.cache_text != "off")
    quantizable_text = device.cuda and any(e.blocks for e in model_family.text_encoders) and not (
        config.trains_adapter() and config.lora.train_text_encoder)
    latents = _resolved_latent_cache(config)
    model = config.model
    # In the order the reasons are told.
    space: Options = {
        "model.precision": ("auto",) if device.cuda and model.precision == "fp32" else (model.precision,),
        "model.base_quantization": ("none", "fp8", "int8", "nf4") if stores_base else (model.base_quantization,),
        "model.blocks_to_swap": tuple(range(facts.block_count + 1)) if stores_base else (model.blocks_to_swap,),
        "training.gradient_checkpointing": (False, True),
        "training.batch_size": tuple(b for b in range(effective, 0, -1) if effective % b == 0),
        "model.text_encoder_device": ("gpu", "cpu") if cacheable_text else (model.text_encoder_device,),
        "model.text_encoder_quantization": ("none", "fp8", "nf4") if quantizable_text
        else (model.text_encoder_quantization,),
    }
    # Without the dataset's size the caches' RAM is unknown: they stay as the person set them.
    space["dataset.cache_latents"] = ("memory", "disk") if images and latents in ("memory", "disk") \
        else (config.dataset.cache_latents,)
    space["dataset.cache_text"] = ("on", "disk") if images and cacheable_text else (config.dataset.cache_text,)
    return space


def _resolved_latent_cache(config: Config) -> str:
    setting = config.dataset.cache_latents
    if setting == "auto":
        return "memory" if config.dataset.crop == "center" and not config.dataset.flip else "off"
    return setting


def _resolved_text_cache(config: Config) -> str:
    setting = config.dataset.cache_text
    if setting == "auto":
        return "off" if config.trains_text() or config.caption_variation().varies_text else "on"
    return setting


def with_options(config: Config, options: dict[str, Any]) -> Config:
    """``config`` with the options set (unvalidated: the planner validates the plan it returns)."""
    sections: dict[str, dict[str, Any]] = {}
    for path, value in options.items():
        section, name = path.split(".")
        sections.setdefault(section, {})[name] = value
    effective = config.training.batch_size * config.training.gradient_accumulation_steps
    if "batch_size" in sections.get("training", {}):
        sections["training"]["gradient_accumulation_steps"] = effective // sections["training"]["batch_size"]
    return config.model_copy(update={section: getattr(config, section).model_copy(update=values)
                                     for section, values in sections.items()})


def relative_step_time(config: Config, device: DeviceFacts) -> float:
    """The cost model (see the module's docstring): time per effective batch relative to the plain run."""
    time = 1.0
    if config.training.gradient_checkpointing:
        time *= CHECKPOINTING_COST
    if device.cuda:
        time *= QUANTIZATION_COST[config.model.base_quantization]
        time *= TEXT_QUANTIZATION_COST[config.model.text_encoder_quantization]
        block_count = families.family(config.model.architecture).memory.block_count
        if block_count:
            time *= 1 + FULL_SWAP_COST * min(config.model.blocks_to_swap, block_count) / block_count
        if config.model.precision == "fp32":
            time *= FP32_COST
    time *= config.training.gradient_accumulation_steps ** MICRO_BATCH_EXPONENT
    time *= DISK_CACHE_COST ** ((_resolved_latent_cache(config) == "disk") + (_resolved_text_cache(config) == "disk"))
    return time


def _weights_bytes(count: int, quantization: str, share: float) -> float:
    if quantization == "none":
        return count * 2
    return count * (share * QUANTIZED_BYTES[quantization] + (1 - share) * 2)


def ram_need(config: Config, device: DeviceFacts, parameters: dict[str, int] | None = None, images: int = 0) -> int:
    """RAM the run holds while it trains (see the module's docstring)."""
    model_family = families.family(config.model.architecture)
    facts = model_family.memory
    counts = dict(parameters or facts.reference_parameters)
    latent_pixels = (config.dataset.resolution // 8) ** 2
    caches = 0
    if _resolved_latent_cache(config) == "memory":
        caches += images * latent_pixels * LATENT_BYTES_PER_PIXEL
    if _resolved_text_cache(config) == "on":
        caches += images * TEXT_CACHE_BYTES
    if not device.cuda:
        return estimate_memory(config, "cpu", parameters).total + caches
    need = RAM_PROCESS + caches
    if text_encoders_leave_gpu(config, "cuda"):
        text = sum(n for name, n in counts.items() if name.startswith("text_encoder"))
        need += _weights_bytes(text, config.model.text_encoder_quantization, facts.text_quantizable_share)
    if config.model.blocks_to_swap and facts.block_count:
        denoiser = _weights_bytes(counts.get(model_family.denoiser, 0), config.model.base_quantization,
                                  facts.quantizable_share)
        need += denoiser * min(config.model.blocks_to_swap, facts.block_count) / facts.block_count
    return int(need)


@dataclass(frozen=True)
class _Candidate:
    options: dict[str, Any]
    config: Config
    vram: int
    ram: int
    time: float

    def fits(self, device: DeviceFacts) -> bool:
        if not device.cuda:
            return self.ram <= device.ram_budget
        return self.vram <= max(device.vram_budget, 0) and self.ram <= device.ram_budget

    def overshoot(self, device: DeviceFacts) -> float:
        """How far past the budgets (the largest ratio of need to budget): the smallest plan has the least."""
        ratios = [self.ram / max(device.ram_budget, 1)]
        if device.cuda:
            ratios.append(self.vram / max(device.vram_budget, 1))
        return max(ratios)


class _Search:
    """The candidates of one config on one device, their estimates memoized (many share a GPU footprint).

    ``below``: only candidates whose need (GPU memory on CUDA, RAM on the CPU) is under it take part — the plans
    strictly smaller than one that ran out of memory."""

    def __init__(self, config: Config, device: DeviceFacts, parameters: dict[str, int] | None, images: int,
                 calibration: float = 1.0, below: int | None = None):
        self.config, self.device, self.parameters, self.images = config, device, parameters, images
        self.calibration = calibration
        self.below = below
        self.space = option_space(config, device, images)
        self._vram: dict[tuple, int] = {}

    def candidate(self, options: dict[str, Any]) -> _Candidate:
        config = with_options(self.config, options)
        key = tuple(v for k, v in sorted(options.items()) if k not in ("dataset.cache_latents", "dataset.cache_text"))
        if key not in self._vram:
            self._vram[key] = int(estimate_memory(config, "cuda", self.parameters).total * self.calibration) \
                if self.device.cuda else 0
        ram = ram_need(config, self.device, self.parameters, self.images)
        if not self.device.cuda:  # the CPU's need is its estimate: the calibration applies to it
            ram = int(ram * self.calibration)
        return _Candidate(options, config, self._vram[key], ram, relative_step_time(config, self.device))

    def need(self, candidate: _Candidate) -> int:
        """What runs out first: GPU memory on CUDA, RAM on the CPU."""
        return candidate.vram if self.device.cuda else candidate.ram

    def current(self) -> _Candidate:
        """The config's own options, as a candidate."""
        flat = _flat(self.config)
        return self.candidate({path: flat[path] for path in self.space})

    def candidates(self, pinned: dict[str, Any] | None = None) -> Iterator[_Candidate]:
        """Every combination, but for block swap only the fewest blocks that fit (more is slower and takes more
        RAM) and all of them (the smallest plan)."""
        space = {**self.space, **{k: (v,) for k, v in (pinned or {}).items()}}
        swaps = space.pop("model.blocks_to_swap", (0,))
        names = list(space)
        for values in itertools.product(*(space[name] for name in names)):
            options = dict(zip(names, values, strict=True))
            if not options["training.gradient_checkpointing"] and swaps[0]:
                continue  # swapping needs checkpointing (the person's own swap count, kept, included)
            if not options["training.gradient_checkpointing"] or len(swaps) == 1:
                found = [self.candidate({**options, "model.blocks_to_swap": swaps[0]})]
            else:
                found = [self.candidate({**options, "model.blocks_to_swap": swaps[-1]})]
                fewest = self._fewest_swapped(options, swaps)
                if fewest is not None and fewest != swaps[-1]:
                    found.append(self.candidate({**options, "model.blocks_to_swap": fewest}))
            yield from (c for c in found if self.below is None or self.need(c) < self.below)

    def _fewest_swapped(self, options: dict[str, Any], swaps: tuple[int, ...]) -> int | None:
        """Binary search: the GPU need falls as blocks are swapped (the estimate is monotone in the count)."""
        budget = self.device.vram_budget if self.below is None else min(self.device.vram_budget, self.below - 1)
        if self.candidate({**options, "model.blocks_to_swap": swaps[-1]}).vram > budget:
            return None
        low, high = 0, len(swaps) - 1
        while low < high:
            middle = (low + high) // 2
            if self.candidate({**options, "model.blocks_to_swap": swaps[middle]}).vram <= budget:
                high = middle
            else:
                low = middle + 1
        return swaps[low]

    def best(self, pinned: dict[str, Any] | None = None) -> tuple[_Candidate | None, _Candidate | None]:
        """The fastest candidate that fits (None: none does) and the smallest one (None only under ``below``, when
        no candidate is smaller)."""
        fastest, smallest = None, None
        for candidate in self.candidates(pinned):
            if candidate.fits(self.device) and (
                    fastest is None or (candidate.time, candidate.vram, candidate.ram)
                    < (fastest.time, fastest.vram, fastest.ram)):
                fastest = candidate
            if smallest is None or candidate.overshoot(self.device) < smallest.overshoot(self.device):
                smallest = candidate
        assert smallest is not None or self.below is not None  # the space holds at least the config's own options
        return fastest, smallest


def plan_memory(config: Config, device: DeviceFacts, parameters: dict[str, int] | None = None,
                images: int = 0, calibration: float = 1.0) -> MemoryPlan:
    """The fastest plan for ``config`` that fits ``device`` (or, when none does, the smallest, ``fits`` False).

    ``parameters``: the model's counts by component (``trainer.model_sizes.count_parameters``); None: the
    family's reference model.  ``images``: how many images the dataset has (for the caches held in RAM; 0: unknown).
    ``calibration``: measured peak ÷ estimate of an earlier plan on this device (Measure): every GPU need is the
    estimate times it, so a model that undercounts on this machine is corrected once.
    """
    if not calibration > 0:
        raise ValueError(f"calibration: the measured ÷ estimated ratio must be > 0, got {calibration}")
    if families.family(config.model.architecture).is_toy:
        return MemoryPlan(True, config, 0, device.vram_budget if device.cuda else 0, 0, device.ram_budget, 1.0,
                          ("The toy network fits anywhere: nothing to change.",))
    search = _Search(config, device, parameters, images, calibration)
    fastest, smallest = search.best()
    assert smallest is not None
    return _plan(search, fastest, smallest)


def next_smaller_plan(config: Config, device: DeviceFacts, parameters: dict[str, int] | None = None,
                      images: int = 0, ran_out_above: int = 0) -> MemoryPlan | None:
    """After ``config`` ran out of memory on ``device``: the fastest plan whose estimate is strictly smaller than
    the failed config's and that fits with the measured pressure; when none fits, the smallest plan that is still
    strictly smaller (``fits`` False); None when no plan is smaller at all (or for the toy network).

    ``ran_out_above``: what the failed run could hold when it ran out (on CUDA the memory its allocator held plus
    what was free; on the CPU its resident memory plus what was available), 0 when unknown.  The failed config
    needed more than that, so its estimate was short by at least ``ran_out_above ÷ estimate``: every need is
    calibrated by that ratio (never below 1), as Measure's ratio calibrates a plan.
    """
    if families.family(config.model.architecture).is_toy:
        return None
    failed = _Search(config, device, parameters, images).current()
    estimate = _Search(config, device, parameters, images).need(failed)
    calibration = max(1.0, ran_out_above / estimate) if ran_out_above > 0 and estimate > 0 else 1.0
    # Strictly smaller: under the failed config's need at the same calibration (a cheaper-to-compare equivalent).
    search = _Search(config, device, parameters, images, calibration, below=int(estimate * calibration))
    fastest, smallest = search.best()
    if smallest is None:
        return None
    return _plan(search, fastest, smallest)


def _plan(search: _Search, fastest: _Candidate | None, smallest: _Candidate) -> MemoryPlan:
    """The plan of ``fastest`` (or of ``smallest`` when nothing fits), validated, with its reasons."""
    config, device, images, calibration = search.config, search.device, search.images, search.calibration
    chosen = fastest or smallest
    leaves = text_encoders_leave_gpu(chosen.config, "cuda")
    if config.model.text_encoder_device == "auto" and text_encoders_leave_gpu(config, "cuda") == leaves:
        # "auto" already does what the plan chose: kept, so the planned config says no more than it must.
        chosen = replace(chosen, config=with_options(chosen.config, {"model.text_encoder_device": "auto"}))
    planned = config_from_dict(chosen.config.to_dict())  # validated: every plan is a config the trainer accepts
    reasons = _reasons(search, chosen, fastest is not None)
    if calibration != 1.0:
        kind = "GPU" if device.cuda else "RAM"
        source = "as the out-of-memory showed" if search.below is not None else "as Measure found on this device"
        reasons.append(f"{kind} needs are the estimate ×{calibration:.2f}, {source}.")
    if not images:
        reasons.append("The dataset's size is not known here: the latent and caption caches held in RAM are not "
                       "counted.")
    changes = {path: value for path, value in _flat(planned).items() if _flat(config).get(path) != value}
    return MemoryPlan(fastest is not None, planned, chosen.vram, device.vram_budget if device.cuda else 0,
                      chosen.ram, device.ram_budget, chosen.time, tuple(reasons), changes)


def describe_changes(changes: dict[str, Any]) -> str:
    """A plan's changes in words: "Gradient checkpointing on; Latents cached on disk"."""
    batch = changes.get("training.batch_size")
    effective = batch * changes.get("training.gradient_accumulation_steps", 1) if batch else 0
    return "; ".join(_LABELS[path](value, effective) for path, value in changes.items() if path in _LABELS)


def plan_overrides(changes: dict[str, Any]) -> list[str]:
    """A plan's changes as ``--set KEY=VALUE`` overrides (``kamaal-train resume RUN_DIR --set …``)."""
    def text(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    return [f"{path}={text(value)}" for path, value in changes.items()]


def _flat(config: Config) -> dict[str, Any]:
    data = config.to_dict()
    return {f"{section}.{name}": value for section, values in data.items() if isinstance(values, dict)
            for name, value in values.items()}


def _reasons(search: _Search, chosen: _Candidate, fits: bool) -> list[str]:
    """A sentence per choice: for each option not at its fastest value, what the fastest value would have cost."""
    device, config = search.device, search.config
    reasons: list[str] = []
    effective = config.training.batch_size * config.training.gradient_accumulation_steps
    if not fits:  # the smallest plan: what it is, without comparisons (none of them fits either)
        return [_LABELS[path](chosen.options[path], effective) + "." for path, values in search.space.items()
                if len(values) > 1 or chosen.options[path] != _flat(config)[path]]
    counts = dict(search.parameters or families.family(config.model.architecture).memory.reference_parameters)
    model_family = families.family(config.model.architecture)
    for path, values in search.space.items():
        value = chosen.options[path]
        label = _LABELS[path](value, effective)
        if len(values) == 1:
            if path == "model.precision" and value != config.model.precision:
                reasons.append(f"{label}: fp32 takes twice the memory and time of mixed precision.")
            continue
        fastest = values[0]
        if path == "model.text_encoder_device":  # free per step: they leave the GPU whenever RAM allows
            fastest = "cpu"
        if value == fastest:
            reasons.append(f"{label}: {_ALREADY[path]}")
            continue
        alternative, smallest = search.best({path: fastest})
        because = ""
        if path == "model.base_quantization":
            weights = counts.get(model_family.denoiser, 0) * 2
            denoiser = "UNet" if model_family.denoiser == "unet" else model_family.denoiser
            because = f"the {denoiser}'s bf16 weights alone are {gb(weights)}; "
        if path == "model.text_encoder_device":
            text = sum(n for name, n in counts.items() if name.startswith("text_encoder"))
            because = f"their {gb(text * 2)} in bf16 would wait in RAM, and "
        if alternative is None and smallest is None:  # a plan after an out-of-memory: none is smaller
            reasons.append(f"{label}: {because}no plan with {_LABELS[path](fastest, effective).lower()} is smaller "
                           "than the one that ran out of memory.")
        elif alternative is None:
            assert smallest is not None
            lacking = []
            if device.cuda and smallest.vram > device.vram_budget:
                lacking.append(f"{gb(smallest.vram)} of GPU memory (this card leaves {gb(device.vram_budget)})")
            if smallest.ram > device.ram_budget:
                lacking.append(f"{gb(smallest.ram)} of RAM (this computer leaves {gb(device.ram_budget)})")
            reasons.append(f"{label}: {because}with {_LABELS[path](fastest, effective).lower()} even the "
                           f"smallest plan needs {' and '.join(lacking) or 'more than the budget'}.")
        else:
            reasons.append(f"{label}: {because}faster than the best plan with "
                           f"{_LABELS[path](fastest, effective).lower()} "
                           f"(×{alternative.time:.2f} against ×{chosen.time:.2f}).")
    return reasons


_LABELS = {
    "model.precision": lambda v, e: {"auto": "Mixed precision (bf16 where the GPU has it, else fp16)",
                                     "fp32": "Full precision (fp32)"}.get(v, f"Mixed precision ({v})"),
    "model.base_quantization": lambda v, e: "bf16 base" if v == "none" else f"{v.upper()} base",
    "model.blocks_to_swap": lambda v, e: f"{v} blocks swapped to RAM" if v else "No block swap",
    "model.text_encoder_device": lambda v, e: "Text encoders wait in RAM once the captions are encoded"
    if v == "cpu" else "Text encoders stay on the GPU",
    "model.text_encoder_quantization": lambda v, e: "Text encoders unquantized" if v == "none"
    else f"Text encoders in {v.upper()}",
    "training.gradient_checkpointing": lambda v, e: "Gradient checkpointing on" if v else "Gradient checkpointing off",
    "training.batch_size": lambda v, e: f"Batch {v}" + (f" × {e // v} accumulated" if e > v else ""),
    "dataset.cache_latents": lambda v, e: f"Latents cached {'in RAM' if v == 'memory' else 'on disk'}"
    if v in ("memory", "disk") else f"Latents cache {v}",
    "dataset.cache_text": lambda v, e: {"on": "Captions cached in RAM", "disk": "Captions cached on disk"}.get(
        v, f"Caption cache {v}"),
}
_ALREADY = {
    "model.base_quantization": "the full-precision weights fit.",
    "model.blocks_to_swap": "every block fits on the GPU.",
    "model.text_encoder_device": "frees their GPU memory at no cost per step.",
    "model.text_encoder_quantization": "they fit as they are.",
    "training.gradient_checkpointing": "the activations fit without recomputation.",
    "training.batch_size": "the whole effective batch fits in one pass.",
    "dataset.cache_latents": "the fastest, and RAM holds them.",
    "dataset.cache_text": "the fastest, and RAM holds them.",
}
