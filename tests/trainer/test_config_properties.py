"""Property: any config file and ``--set`` overrides give a usable config or a ``ConfigError`` naming the file.

``tests/trainer/test_config.py`` throws values at ``config_from_dict``; this goes through the whole loader a
user's file goes through (``load_config``: TOML text, overrides, validation, path resolution) with the inputs
that used to end in tracebacks: paths like ``~nosuchuser/x`` or with a NUL, inline tables and arrays hundreds
deep, seeds past 2^63, NaN and huge numbers.  A config it accepts must be one training can use to the end:
every path absolute, every seed one ``torch.Generator.manual_seed`` takes (including the ones training
derives from ``training.seed``), and it round-trips through the TOML the run folder stores.
"""

from __future__ import annotations

import math
import tempfile
import tomllib
from pathlib import Path

import tomli_w
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainer.config import MAX_SEED, ConfigError, config_from_dict, load_config, path_fields

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

BASES = [
    {},
    {"mode": "lora", "model": {"architecture": "sd15", "path": "models/base"}, "dataset": {"path": "data"},
     "sampling": {"prompts": ["a dog"], "seeds": [1, 2]}},
    {"mode": "dreambooth", "model": {"architecture": "sdxl", "path": "/abs/base.safetensors"},
     "dataset": {"path": "data"}, "dreambooth": {"class_dir": "class"},
     "concepts": [{"path": "more", "class_dir": "more-class", "class_prompt": "a cat"}]},
]
FIELDS = ["model.path", "dataset.path", "dreambooth.class_dir", "output.runs_dir", "sampling.seeds",
          "training.seed", "toy.task_seed", "training.steps", "lora.rank", "lora.target_modules", "mode",
          "training.learning_rate", "model", "nonsense.key", "concepts"]
PATHS = st.sampled_from(["~nosuchuser/model.safetensors", "~", "~/models/x", "a\x00b", "relative/dir", "/abs/x",
                         "x" * 5000, "", "C:\\models\\x", "~root/x"])
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)  # files are UTF-8: no surrogates
SEEDS = st.sampled_from([0, 1, MAX_SEED, MAX_SEED + 1, 2**64 - 1, 2**64, 2**70, -1, -(2**63), -(2**63) - 1])
values = st.recursive(
    PATHS | TEXT | SEEDS | st.integers(-(2**70), 2**70) | st.floats() | st.booleans()
    | st.lists(SEEDS, max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["path", "a", "seeds"]) | TEXT,
                                                                inner, max_size=3),
    max_leaves=6)
TYPED = {"model.path": PATHS, "dataset.path": PATHS, "dreambooth.class_dir": PATHS, "output.runs_dir": PATHS,
         "sampling.seeds": st.lists(SEEDS, max_size=3), "training.seed": SEEDS, "toy.task_seed": SEEDS,
         "concepts": st.lists(st.fixed_dictionaries({"path": PATHS}), max_size=2),
         "mode": st.sampled_from(["toy", "lora", "frozen", "paint"]), "training.steps": st.integers(-3, 2**70)}
OVERRIDE_VALUES = st.sampled_from(["18446744073709551616", "[1, 9223372036854775808]", "'~nosuchuser/x'", "nan",
                                   "inf", '"a\\u0000b"', "[" * 600 + "]" * 600, "{a = " * 600 + "1" + "}" * 600,
                                   "3", "[0, 5]", "~nobody/x", "true"]) | TEXT


def _deep_table(depth: int) -> str:
    return "{a = " * depth + "1" + "}" * depth


@st.composite
def config_files(draw: st.DrawFn) -> tuple[str, list[str]]:
    data = tomllib.loads(tomli_w.dumps(draw(st.sampled_from(BASES))))  # a deep copy
    for dotted in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        # Mostly a value of the field's own kind (so that whole files get through), sometimes anything.
        typed = TYPED.get(dotted, values) if draw(st.integers(0, 3)) else values
        value = draw(typed)
        *tables, name = dotted.split(".")
        table = data
        for part in tables:
            table = table.setdefault(part, {}) if isinstance(table.get(part, {}), dict) else {}
        table[name] = value
    text = tomli_w.dumps(data)
    deep = draw(st.sampled_from([None] * 12 + [20, 600, 3000]))
    if deep is not None:
        text = f"deep = {_deep_table(deep)}\n" + text if draw(st.booleans()) else \
            f"seeds_too = {'[' * deep}{']' * deep}\n" + text
    count = draw(st.sampled_from([0, 0, 0, 1, 2]))
    overrides = [f"{field}={value}" for field, value in
                 draw(st.lists(st.tuples(st.sampled_from(FIELDS), OVERRIDE_VALUES), min_size=count, max_size=count))]
    return text, overrides


@PROPERTY
@given(config_files())
def test_any_config_file_gives_a_usable_config_or_a_refusal_naming_it(drawn: tuple[str, list[str]]) -> None:
    text, overrides = drawn
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "job.toml"
        path.write_text(text, encoding="utf-8")
        try:
            config = load_config(path, overrides)
        except ConfigError as error:
            message = str(error)
            assert str(path) in message or "--set" in message, message
            if not overrides:  # (a refusal may quote a --set as the person typed it, however long)
                assert all(len(line) < 2000 for line in message.splitlines()), "a message must stay readable"
            return
    for dotted in path_fields():
        section, name = dotted.split(".")
        value = getattr(getattr(config, section), name)
        for item in value if isinstance(value, list) else [value]:  # a list of paths resolves item by item
            assert item == "" or Path(item).is_absolute(), (dotted, item)
    seed = config.training.seed
    for derived in [*config.sampling.seeds, seed, seed + 1, (seed + 3) * 1_000_003 + 10**9, seed * 100_003 + 10**6,
                    config.toy.task_seed]:
        torch.Generator().manual_seed(derived)  # raises for a seed torch cannot take
        assert 0 <= derived <= MAX_SEED
    assert config_from_dict(tomllib.loads(config.to_toml())) == config  # what the run folder stores reads back
    assert not any(math.isnan(v) for v in (config.training.learning_rate, config.lora.alpha))
