"""Property: whatever bytes sit at a model path, the readers describe a model or refuse it naming the file.

One strategy draws safetensors files the way a fuzzer would: mostly well-formed headers (so the draws get
past the header into detection, tensor reads and merges) with SD-like tensor names, every dtype the format
knows, shapes of any rank (scalar weights included), random contents (NaN included), metadata of every
JSON type; then, sometimes, one damage: an entry that is not a table, a bad shape or dtype, offsets that
overlap, leave gaps or run past the end, a header nested thousands deep, a lying length prefix, a cut or
an extended file.  For every draw, ``open_checkpoint``, ``inspect_model`` and ``open_model`` (whose tensors
are then read) either return a usable result or raise ``InputError`` whose message names the file —
never another exception.  ``.ckpt`` pickles get the same property over what ``torch.save`` can write.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainer.errors import InputError
from trainer.merge.sources import open_model
from trainer.models import inspect_model
from trainer.models.checkpoint_io import open_checkpoint
from trainer.models.detect import UNET_PREFIX, V_PRED_STAT_KEY
from trainer.models.safetensors_header import DTYPE_BITS, read_header

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NAMES = [
    UNET_PREFIX + "input_blocks.0.0.weight",
    UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
    UNET_PREFIX + "output_blocks.2.1.conv.weight",
    UNET_PREFIX + "label_emb.0.0.weight",
    V_PRED_STAT_KEY,
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    "cond_stage_model.model.ln_final.weight",
    "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
    "conditioner.embedders.1.model.ln_final.weight",
    "conditioner.embedders.0.model.ln_final.weight",
    "first_stage_model.encoder.conv_in.weight",
    "v_pred",
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
    "down_blocks.0.resnets.0.conv1.weight",
]
FLOAT_CODES = {"F64": "d", "F32": "f", "F16": "e"}


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


ODD_DTYPES = ["U32", "U16", "U64", "F8_E8M0", "F4", "F6_E2M3", "C64"]  # known to the format, refused as weights
DTYPES = st.sampled_from(["F32"] * 20 + ["F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3"] + ODD_DTYPES)
SHAPES = st.lists(st.integers(0, 6), min_size=0, max_size=4)


@st.composite
def tensor_specs(draw: st.DrawFn) -> list[tuple[str, str, list[int]]]:
    """Random tensors, often on top of an SD-like skeleton (so detection, loading and merging are reached)."""
    specs: list[tuple[str, str, list[int]]] = []
    if draw(st.booleans()):
        width = draw(st.sampled_from([[2, 768], [2, 1024], [2, 8], [], [768], [2, 768, 1, 1]]))
        conv_in = draw(st.sampled_from([[2, 4, 1, 1], [2, 9, 1, 1], [], [4]]))
        encoder = draw(st.sampled_from(["cond_stage_model.transformer.", "cond_stage_model.model.",
                                        "conditioner.embedders.1.model.", "conditioner.embedders.0.model."]))
        specs += [(NAMES[0], draw(DTYPES), conv_in), (NAMES[1], draw(DTYPES), width),
                  (encoder + "x.weight", draw(DTYPES), draw(SHAPES)),
                  ("first_stage_model.decoder.conv_out.weight", draw(DTYPES), draw(SHAPES))]
        if draw(st.booleans()):
            specs.append((V_PRED_STAT_KEY, draw(DTYPES), draw(SHAPES)))
    names = draw(st.lists(st.sampled_from(NAMES) | st.text(min_size=1, max_size=12), min_size=0, max_size=4,
                          unique=True))
    taken = {name for name, _, _ in specs}
    return specs + [(name, draw(DTYPES), draw(SHAPES)) for name in names if name not in taken]


def _data(dtype: str, count: int, fill: str, rng: random.Random) -> bytes:
    size = count * DTYPE_BITS[dtype] // 8 if count * DTYPE_BITS[dtype] % 8 == 0 else -1
    if size < 0:
        return b""  # a sub-byte dtype with an odd count: the header will not add up; that is a case too
    if fill == "nan" and dtype in FLOAT_CODES:
        import struct

        return struct.pack(f"<{count}{FLOAT_CODES[dtype]}", *([math.nan] * count))
    if fill == "zeros":
        return bytes(size)
    return rng.randbytes(size)


DAMAGES = ["none"] * 8 + ["entry_not_table", "bad_shape", "bad_dtype", "bad_offsets", "overlap", "deep",
                          "metadata", "length_prefix", "cut", "extend", "not_json", "duplicate"]


@st.composite
def safetensors_bytes(draw: st.DrawFn) -> bytes:
    specs = draw(tensor_specs())
    rng = random.Random(draw(st.integers(0, 2**32)))
    fill = draw(st.sampled_from(["zeros", "random", "nan"]))
    header: dict[str, object] = {}
    data = b""
    for name, dtype, shape in specs:
        chunk = _data(dtype, math.prod(shape), fill, rng)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(chunk)]}
        data += chunk
    metadata = draw(st.sampled_from([None, {"modelspec.prediction_type": "v"}, {"format": "pt"},
                                     {"modelspec.prediction_type": "epsilon", "x": "y"}]))
    if metadata is not None:
        header["__metadata__"] = metadata
    damage = draw(st.sampled_from(DAMAGES))
    entries = [name for name in header if name != "__metadata__"]
    victim = draw(st.sampled_from(entries)) if entries else None
    odd_values = st.sampled_from([-1, 2.5, "7", True, None, [[1]], 2**70, {"a": 1}, [], [1, 2, 3]])
    if damage == "entry_not_table" and victim:
        header[victim] = draw(odd_values)
    elif damage == "bad_shape" and victim:
        header[victim]["shape"] = draw(odd_values | st.lists(odd_values, max_size=3))  # type: ignore[index]
    elif damage == "bad_dtype" and victim:
        header[victim]["dtype"] = draw(st.sampled_from(["", "f32", "X9", 32, None, "F8_E8M0", "C64"]))  # type: ignore[index]
    elif damage == "bad_offsets" and victim:
        header[victim]["data_offsets"] = draw(odd_values | st.tuples(st.integers(-5, 2**65), st.integers(-5, 2**65))
                                              .map(list))  # type: ignore[index]
    elif damage == "overlap" and len(entries) > 1:
        header[entries[1]]["data_offsets"] = list(header[entries[0]]["data_offsets"])  # type: ignore[index]
    elif damage == "metadata":
        header["__metadata__"] = draw(st.sampled_from([[], ["a"], {"a": 1}, {"a": {"b": "c"}}, "text", 5, {"a": None}]))
    text = json.dumps(header)
    if damage == "deep":
        depth = draw(st.sampled_from([3, 200, 5_000, 100_000]))
        text = text[:-1] + (", " if len(header) else "") + f'"deep": {_deep(depth)}' + "}"
    elif damage == "not_json":
        text = rng.randbytes(draw(st.integers(2, 64))).decode("latin-1")
    elif damage == "duplicate" and victim:
        text = text[:-1] + ", " + json.dumps({victim: header[victim]})[1:]
    encoded = text.encode("utf-8", errors="surrogatepass")
    encoded += b" " * (-len(encoded) % 8)
    length = len(encoded)
    if damage == "length_prefix":
        length = draw(st.sampled_from([0, 1, length - 1, length + 1, 2**63, 2**64 - 1, 100 * 2**20 + 1]))
    blob = length.to_bytes(8, "little") + encoded + data
    if damage == "cut":
        blob = blob[: draw(st.integers(0, max(0, len(blob) - 1)))]
    elif damage == "extend":
        blob += rng.randbytes(draw(st.integers(1, 16)))
    return blob


def _named(error: InputError, path: Path) -> None:
    assert str(path) in str(error), str(error)


def _check_single_file(path: Path) -> None:
    try:
        checkpoint = open_checkpoint(path)
    except InputError as error:
        _named(error, path)
        return
    header = read_header(path)
    assert checkpoint.shapes == {name: entry.shape for name, entry in header.tensors.items()} and checkpoint.shapes
    for name, shape in checkpoint.shapes.items():
        assert tuple(checkpoint.tensor(name).shape) == shape  # a checked header means readable tensors
    try:
        info = inspect_model(path)
        assert info.architecture in ("sd15", "sd2", "sdxl")
    except InputError as error:
        _named(error, path)
    try:
        with open_model(path, "model A") as model:
            for key, (dtype, shape) in model.specs.items():
                value = model.get(key)
                assert (value.dtype, tuple(value.shape)) == (dtype, shape)
    except InputError as error:
        assert str(error).startswith("model A: ")
        _named(error, path)


@PROPERTY
@given(safetensors_bytes())
def test_any_safetensors_bytes_give_a_model_or_a_refusal_naming_the_file(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        path.write_bytes(blob)
        _check_single_file(path)


@PROPERTY
@given(st.binary(max_size=300))
def test_any_short_bytes_give_a_refusal_naming_the_file(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        path.write_bytes(blob)
        _check_single_file(path)


# ----------------------------------------------------------------------------- .ckpt pickles

tensors = st.builds(lambda shape, dtype, fill: torch.full(shape, fill, dtype=dtype) if dtype.is_floating_point
                    else torch.zeros(shape, dtype=dtype),
                    st.lists(st.integers(0, 4), max_size=3).map(tuple),
                    st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool,
                                     torch.uint8, torch.complex64]),
                    st.sampled_from([0.0, 1.5, math.nan, math.inf]))
plain = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
keys = st.sampled_from([*NAMES, "state_dict", "optimizer", "epoch"]) | st.text(max_size=6)
pickled = st.recursive(plain | tensors, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(keys, inner, max_size=4), max_leaves=8)


@PROPERTY
@given(pickled)
def test_any_pickled_structure_gives_a_model_or_a_refusal_naming_the_file(structure: object) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.ckpt"
        torch.save(structure, path)
        try:
            checkpoint = open_checkpoint(path)
        except InputError as error:
            _named(error, path)
            return
        assert checkpoint.shapes and all(isinstance(v, torch.Tensor) for v in checkpoint.state_dict().values())
        try:
            inspect_model(path)
        except InputError as error:
            _named(error, path)
