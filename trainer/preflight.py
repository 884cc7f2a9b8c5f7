"""What can be told about a config's inputs before a trainer starts: do the files and folders it names
exist, and are they the right kind?

The config model checks values; this checks the disk, with a few ``stat`` calls and no model loading, so
the window can keep Start disabled (and mark the field) for a run the trainer would refuse, and
``kamaal-train train`` can refuse it before it makes a run folder.  The trainer still checks everything
again when it loads (a file can vanish in between); the messages are the same.

Light (the config and the standard library only): the GUI process imports it.
"""

from __future__ import annotations

from pathlib import Path

from trainer.concepts import concepts_of
from trainer.config import Config, ConfigError
from trainer.families import family, is_toy

MODEL_FILE_SUFFIXES = (".safetensors", ".ckpt")


def input_problems(config: Config) -> dict[str, str]:
    """``{field: message}`` for every input the trainer would refuse; empty when all is well."""
    problems: dict[str, str] = {}
    model = config.model.path
    if is_toy(config.model.architecture):
        if model:  # frozen/fine-tuning from an earlier toy run's weights
            path = Path(model)
            if not path.exists():
                problems["model.path"] = f"file not found: {path}"
            elif not path.is_file() or path.suffix.lower() != ".safetensors":
                problems["model.path"] = (f"{path} is not a .safetensors file: the toy network starts from the "
                                          "toy.safetensors an earlier toy run wrote in its output folder")
        return problems
    if not model:
        problems["model.path"] = (f"choose the base model to train (a diffusers folder or a .safetensors file of "
                                  f"{family(config.model.architecture).a_name} model)")
    else:
        path = Path(model)
        if not path.exists():
            problems["model.path"] = f"not found: {path}"
        elif path.is_dir() and not (path / "model_index.json").is_file():
            problems["model.path"] = (f"{path} is a folder but not a diffusers model (it has no model_index.json); "
                                      "choose the model's folder itself, or a single .safetensors file")
        elif path.is_file() and path.suffix.lower() not in MODEL_FILE_SUFFIXES:
            problems["model.path"] = f"{path} is neither a .safetensors/.ckpt file nor a diffusers folder"
    for index, file in enumerate(config.model.text_encoder_files):
        if not Path(file).is_file():
            problems[f"model.text_encoder_files[{index}]"] = (f"not found: {file}" if not Path(file).exists()
                                                               else f"{file} is a folder; choose the .safetensors file")
    if config.model.vae_file and not Path(config.model.vae_file).is_file():
        problems["model.vae_file"] = f"not found: {config.model.vae_file}"
    if config.model.tokenizer_folder and not Path(config.model.tokenizer_folder).is_dir():
        problems["model.tokenizer_folder"] = f"not a folder: {config.model.tokenizer_folder}"
    for concept in concepts_of(config):
        field = f"{concept.prefix}.path"
        if not concept.path:
            problems[field] = "choose the folder of training images"
        elif not Path(concept.path).is_dir():
            problems[field] = (f"not found: {concept.path}" if not Path(concept.path).exists()
                               else f"{concept.path} is a file; choose the folder that holds the images")
    return problems


def check_inputs(config: Config, source: str | None = None) -> None:
    """Raise a field-named :class:`ConfigError` for the first refusals :func:`input_problems` finds."""
    problems = input_problems(config)
    if problems:
        raise ConfigError([f"{field}: {message}" for field, message in problems.items()], source)
