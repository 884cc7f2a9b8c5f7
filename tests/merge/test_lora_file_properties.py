"""Property: whatever a LoRA file holds, ``read_lora`` gives modules every merge can use, or a refusal naming it.

The strategy writes real safetensors files (damaged bytes are the header property's job, in
``tests/models/test_model_file_properties.py``) with kohya and diffusers key spellings, and draws what
people's files and fuzzers hold: ranks of 0, weights of any rank (scalars, 1-D "up" weights, 3-D, 4-D with
a kernel), vector or scalar alphas, integer weights, NaN and infinity, unknown keys, and adapter metadata of
every JSON shape.  A file that ``read_lora`` accepts must give modules whose ΔW is finite and shaped like
the weight it changes, and must survive the exact and the SVD merge (SVD used to crash on NaN).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from trainer.errors import InputError
from trainer.merge.lora_files import read_lora
from trainer.merge.lora_merge import merge_lora_sets

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

MODULES = ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "mid_block.resnets.0.conv1",
           "up_blocks.1.attentions.2.proj_out"]
# (down key, up key, alpha key) spellings, for a module path.
SPELLINGS = [
    lambda m: (f"lora_unet_{m.replace('.', '_')}.lora_down.weight", f"lora_unet_{m.replace('.', '_')}.lora_up.weight",
               f"lora_unet_{m.replace('.', '_')}.alpha"),
    lambda m: (f"unet.{m}.lora_A.weight", f"unet.{m}.lora_B.weight", f"unet.{m}.alpha"),
    lambda m: (f"unet.{m}.lora.down.weight", f"unet.{m}.lora.up.weight", f"unet.{m}.alpha"),
    lambda m: ("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
               "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight",
               "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha"),
]
RANK = st.sampled_from([1, 2, 3, 0])
SIDE = st.sampled_from([4, 8, 1, 0])
DTYPES = st.sampled_from([torch.float32] * 4 + [torch.float16, torch.bfloat16, torch.int32])
FILLS = st.sampled_from(["normal"] * 6 + ["nan", "inf", "zero"])


def _tensor(shape: tuple[int, ...], dtype: torch.dtype, fill: str, seed: int) -> torch.Tensor:
    if not dtype.is_floating_point:
        return torch.ones(shape, dtype=dtype)
    values = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    if fill == "zero":
        values = torch.zeros(shape)
    if fill in ("nan", "inf") and values.numel():
        values.view(-1)[seed % values.numel()] = math.nan if fill == "nan" else math.inf
    return values.to(dtype)


@st.composite
def lora_module(draw: st.DrawFn, module: str, seed: int, spelling: int) -> dict[str, torch.Tensor]:
    down_key, up_key, alpha_key = SPELLINGS[spelling](module)
    if draw(st.booleans()):  # half the modules are sound, so whole files get through often enough
        rank, inputs, outputs = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
        conv = draw(st.booleans())
        down = (rank, inputs, 3, 3) if conv else (rank, inputs)
        up = (outputs, rank, 1, 1) if conv else (outputs, rank)
        tensors = {down_key: _tensor(down, torch.float32, "normal", seed),
                   up_key: _tensor(up, draw(st.sampled_from([torch.float32, torch.float16])), "normal", seed + 1)}
        if draw(st.booleans()):
            tensors[alpha_key] = torch.tensor(float(draw(st.integers(1, 8))))
        return tensors
    rank, inputs, outputs = draw(RANK), draw(SIDE), draw(SIDE)
    form = draw(st.sampled_from(["linear"] * 4 + ["conv", "conv_kernel_up", "up_1d", "scalar", "up_3d",
                                                  "rank_mismatch", "down_only"]))
    down_shape: tuple[int, ...] = (rank, inputs)
    up_shape: tuple[int, ...] = (outputs, rank)
    if form == "conv":
        down_shape, up_shape = (rank, inputs, 3, 3), (outputs, rank, 1, 1)
    elif form == "conv_kernel_up":
        down_shape, up_shape = (rank, inputs, 3, 3), (outputs, rank, 3, 3)
    elif form == "up_1d":
        up_shape = (outputs,)
    elif form == "scalar":
        down_shape = ()
    elif form == "up_3d":
        up_shape = (outputs, rank, 2)
    elif form == "rank_mismatch":
        up_shape = (outputs, rank + 1)
    dtype, fill = draw(DTYPES), draw(FILLS)
    tensors = {down_key: _tensor(down_shape, dtype, fill, seed)}
    if form != "down_only":
        tensors[up_key] = _tensor(up_shape, draw(DTYPES), draw(FILLS), seed + 1)
    alpha = draw(st.sampled_from(["none", "scalar", "scalar", "vector", "one_element", "nan", "zero", "negative"]))
    if alpha != "none":
        value = {"scalar": [4.0], "vector": [1.0, 2.0, 3.0], "one_element": [2.0], "nan": [math.nan],
                 "zero": [0.0], "negative": [-2.0]}[alpha]
        tensors[alpha_key] = torch.tensor(value[0]) if alpha in ("scalar", "nan", "zero", "negative") \
            else torch.tensor(value)
    return tensors


metadata_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=5)
adapter_metadata = st.one_of(
    st.none(),
    st.just("not json {"),
    st.builds(json.dumps, metadata_values),
    st.builds(lambda r, a, p: json.dumps({"unet.r": r, "unet.lora_alpha": a, "unet.alpha_pattern": p}),
              metadata_values, metadata_values, metadata_values),
    st.builds(lambda r, a: json.dumps({"unet.r": r, "unet.lora_alpha": a}), st.integers(1, 8), st.floats(0.5, 8)),
)


@st.composite
def lora_files(draw: st.DrawFn) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors: dict[str, torch.Tensor] = {}
    spelling = draw(st.integers(0, 2))  # one family of spellings per file; sometimes a second one mixed in
    for index, module in enumerate(draw(st.lists(st.sampled_from(MODULES), min_size=1, max_size=3, unique=True))):
        mixed = draw(st.sampled_from([spelling] * 6 + [0, 1, 2, 3]))
        tensors |= draw(lora_module(module, index * 7 + draw(st.integers(0, 1000)), mixed))
    if draw(st.integers(0, 9)) == 0:
        tensors["unet.some.dora_scale"] = torch.ones(3)
    raw = draw(adapter_metadata)
    return tensors, ({"lora_adapter_metadata": raw} if raw is not None else {})


@PROPERTY
@given(lora_files())
def test_any_lora_file_gives_usable_modules_or_a_refusal_naming_it(drawn) -> None:
    tensors, metadata = drawn
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "style.safetensors"
        save_file(tensors, path, metadata=metadata)
        try:
            lora = read_lora(path, "LoRA 2")
        except InputError as error:
            assert str(error).startswith(f"LoRA 2: {path}"), str(error)
            return
    assert lora.modules
    for name, module in lora.modules.items():
        assert module.rank >= 1 and math.isfinite(module.alpha), name
        delta = module.delta()
        assert tuple(delta.shape) == module.weight_shape() and bool(torch.isfinite(delta).all()), name
    merged, _ = merge_lora_sets([lora, lora], [0.5, 0.5], "exact")
    compact, energies = merge_lora_sets([lora], [1.0], "svd", rank=1)
    for name in lora.modules:
        assert torch.isfinite(merged.modules[name].delta()).all()
        assert torch.isfinite(compact.modules[name].delta()).all()
        discarded, total = energies[name]
        assert math.isfinite(discarded) and math.isfinite(total)
