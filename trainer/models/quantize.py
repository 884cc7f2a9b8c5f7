"""The frozen base of a LoRA run stored in fewer bits (``model.base_quantization``): what lets Flux.1's 12 B
transformer train on a 16 or 12 GB card.

* ``nf4`` — 4-bit NormalFloat with double-quantised block scales, QLoRA's format, from bitsandbytes
  (``Linear4bit``; about 0.52 byte per weight);
* ``int8`` — 8-bit integers with a scale per output row, torchao's weight-only int8 (1 byte per weight);
* ``fp8`` — float8 e4m3 with a scale per output row, torchao's weight-only float8 (1 byte per weight).

Both libraries run on the CPU as on CUDA, so the tests train through the same code the GPU runs.  Only the
Linear layers inside the family's repeated blocks (``Family.blocks``), a multiple of 64 wide, are
quantized — the embedders and the final layer are small and sensitive and stay in the frozen precision, as
QLoRA trainers keep them.  LoRA then wraps the quantized layers (peft knows both libraries' layers); the
adapters themselves train in fp32.

Each layer is quantized on its way to the device, one at a time, so the full-precision model never sits on
the GPU whole.  ``model.text_encoder_quantization`` does the same to a text encoder that is not trained (the Linear
layers of its ``TextEncoder.blocks``), before it encodes: Qwen-Image's Qwen2.5-VL needs 15.5 GB in bf16, 9.4 in fp8
(musubi-tuner's ``--fp8_vl`` for the same reason).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import torch

LIBRARY = {"nf4": "bitsandbytes", "int8": "torchao", "fp8": "torchao"}
# nf4's block of weights sharing a scale; a layer whose inputs are not a whole number of blocks (none in the real
# models, whose widths are multiples of 64) stays in the frozen precision.
GROUP = 64


def quantized_linears(denoiser: torch.nn.Module, blocks: tuple[str, ...]) -> Iterator[tuple[str, torch.nn.Linear]]:
    """The plain Linear layers inside the model's repeated blocks (dotted paths: a text encoder's
    ``model.language_model.layers``), by module path."""
    for block in blocks:
        try:
            container = denoiser.get_submodule(block)
        except AttributeError:
            continue
        for name, module in container.named_modules():
            # torchao keeps the Linear and swaps its weight for a quantized tensor: those are done already.
            if type(module) is torch.nn.Linear and type(module.weight) in (torch.nn.Parameter, torch.Tensor) \
                    and module.in_features % GROUP == 0:
                yield f"{block}.{name}", module


def _moved(denoiser: torch.nn.Module, device: str, dtype: torch.dtype) -> None:
    """``denoiser`` on ``device`` in ``dtype``, but for the modules its diffusers class keeps in float32
    (``_keep_in_fp32_modules``, matched by name as ``from_pretrained`` matches them): Krea 2's zero-centred RMS norm
    scales, whose 1 + w would round to bf16's 3 digits."""
    denoiser.to(device, dtype)
    keep = set(getattr(denoiser, "_keep_in_fp32_modules", None) or ())
    if keep and dtype != torch.float32:
        for name, module in denoiser.named_modules():
            if keep & set(name.split(".")):
                module.to(torch.float32)


def quantize_denoiser(denoiser: torch.nn.Module, blocks: tuple[str, ...], kind: str, device: str,
                      dtype: torch.dtype, logger: logging.Logger | None = None, what: str = "Base weights") -> int:
    """Replace the Linear layers inside ``blocks`` by quantized ones on ``device`` (the rest of the denoiser is
    moved there in ``dtype``); returns how many weights were quantized.  ``kind`` "none" only moves."""
    if kind == "none":
        _moved(denoiser, device, dtype)
        return 0
    layers = list(quantized_linears(denoiser, blocks))
    count = 0
    with _quiet():
        if kind == "nf4":
            import bitsandbytes as bnb

            for name, linear in layers:
                _replace(denoiser, name, _nf4_layer(bnb, linear, device, dtype))
                count += linear.weight.numel()
        else:
            from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

            config = Int8WeightOnlyConfig() if kind == "int8" else Float8WeightOnlyConfig()
            for _, linear in layers:
                linear.to(device, dtype)
                count += linear.weight.numel()
                quantize_(linear, config)
    _moved(denoiser, device, dtype)  # everything not quantized (quantized weights keep their storage)
    if logger is not None:
        size = f"{count / 1e9:.2f} B" if count >= 10**8 else f"{count / 1e6:.1f} M"
        logger.info("%s: %d Linear layers (%s weights) in %s (%s); the rest in %s", what, len(layers), size,
                    kind, LIBRARY[kind], str(dtype).removeprefix("torch."))
    return count


def _nf4_layer(bnb, linear: torch.nn.Linear, device: str, dtype: torch.dtype) -> torch.nn.Module:
    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                              compute_dtype=dtype, quant_type="nf4", compress_statistics=True, device="meta")
    weight = linear.weight.detach().to("cpu", dtype)
    layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4", compress_statistics=True)
    if linear.bias is not None:
        layer.bias = torch.nn.Parameter(linear.bias.detach().to("cpu", dtype), requires_grad=False)
    # On the CPU, bitsandbytes repacks a weight for fast inference the first time it runs in eval mode, and
    # that packed weight then fails in training (an in-place bias add on a leaf): training alternates with
    # evaluation, so the weights keep their one layout.
    layer.support_avx512bf16_for_cpu = False
    return layer.to(device)  # bitsandbytes quantizes the weight as it moves


def _replace(root: torch.nn.Module, path: str, new: torch.nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    setattr(root.get_submodule(parent_path) if parent_path else root, child, new)


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes the module's parameters and buffers occupy as stored (quantized tensors as their packed data)."""
    seen: set[int] = set()
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        for inner in _storage_tensors(tensor):
            key = inner.untyped_storage().data_ptr() if inner.device.type != "meta" else id(inner)
            if key in seen:
                continue
            seen.add(key)
            total += inner.untyped_storage().nbytes()
    for sub in module.modules():  # bitsandbytes keeps nf4's absmax and codebook on the weight's quant state
        state = getattr(getattr(sub, "weight", None), "quant_state", None)
        if state is not None:
            for value in _quant_state_tensors(state):
                if value.untyped_storage().data_ptr() not in seen:
                    seen.add(value.untyped_storage().data_ptr())
                    total += value.untyped_storage().nbytes()
    return total


def _storage_tensors(tensor: torch.Tensor) -> list[torch.Tensor]:
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is None or type(tensor) in (torch.Tensor, torch.nn.Parameter):
        return [tensor]
    names, _ = flatten()
    inner: list[torch.Tensor] = []
    for name in names:
        value = getattr(tensor, name)
        inner += _storage_tensors(value) if isinstance(value, torch.Tensor) else []
    return inner


def _quant_state_tensors(state) -> list[torch.Tensor]:
    found = [value for value in vars(state).values() if isinstance(value, torch.Tensor)]
    nested = getattr(state, "state2", None)
    return found + (_quant_state_tensors(nested) if nested is not None else [])


class _quiet:
    """bitsandbytes and torchao announce optional kernels they could not find; the run's log is not the place."""

    def __enter__(self) -> None:
        self._levels = {name: logging.getLogger(name).level for name in ("bitsandbytes", "torchao", "torch")}
        for name in self._levels:
            logging.getLogger(name).setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc) -> None:
        self._warnings.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
