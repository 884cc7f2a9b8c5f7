"""The settings being edited, as a Qt model: one value per config field, validated on every change.

Editors write raw values in (whatever the person typed, parsed as far as it goes); the model
validates the whole config with trainer.config after each change and publishes the problems by
field, so the form can mark exactly the fields that are wrong and Start can stay disabled while
anything is.  The files and folders a valid config names are checked too (``trainer.preflight``: a
missing base model, an image folder that is not there), again every few seconds, since a person may
fix them outside the window; such a config is still saved, but cannot start.  A message from the
trainer that names a field is shown as that field's error until the field is edited or the next run
starts.
"""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from desktop_app.train.field_meta import all_field_names
from trainer.config import MODES_BY_ARCHITECTURE, Config, ConfigError, LoraConfig, SamplingConfig, config_from_dict
from trainer.families import FAMILIES, MODEL_FAMILIES, is_toy
from trainer.preflight import input_problems

FIELDS = all_field_names()
INPUT_RECHECK_MS = 2000
# The sampling settings a family may run differently (Family.sample_defaults), with the config's defaults.
SAMPLING_DEFAULTS = {key: SamplingConfig.model_fields[key].default for key in ("guidance_scale", "inference_steps")}


class ConfigModel(QObject):
    valueChanged = Signal(str, object)  # dotted field name, new value (after load or set_value)
    errorsChanged = Signal()
    configChanged = Signal(object)  # a new *valid* Config (what autosave writes)
    modeChanged = Signal(str)

    def __init__(self, config: Config, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._values: dict[str, Any] = flatten(config)
        self._config: Config | None = config
        self._errors: dict[str, str] = {}
        self._inputs = _input_errors(config)
        self._external: dict[str, str] = {}
        architecture = config.model.architecture
        # The diffusion family a LoRA/DreamBooth mode goes back to after the toy: the project's, else the first.
        self._last_sd_architecture = architecture if not is_toy(architecture) else MODEL_FAMILIES[0]
        self._recheck = QTimer(self)
        self._recheck.setInterval(INPUT_RECHECK_MS)
        self._recheck.timeout.connect(self.recheck_inputs)
        self._recheck.start()

    # ------------------------------------------------------------------ reading

    def value(self, name: str) -> Any:
        return self._values[name]

    @property
    def config(self) -> Config | None:
        """The current settings as a Config, or None while any field is invalid (a config whose files are
        missing is still a config: it is saved, but :meth:`is_valid` keeps Start disabled)."""
        return self._config if not self._errors else None

    @property
    def mode(self) -> str:
        return str(self._values["mode"])

    def errors(self) -> dict[str, str]:
        """``{field: message}`` for every problem (``""`` for ones that name no field)."""
        merged = dict(self._errors)
        for name, message in [*self._inputs.items(), *self._external.items()]:
            merged[name] = f"{merged[name]}; {message}" if name in merged else message
        return merged

    def error_for(self, name: str) -> str | None:
        return self.errors().get(name)

    def is_valid(self) -> bool:
        """True when the settings validate and the files they name are there: a run could start.  A
        trainer's complaint marks its field but does not block Start: the person may have fixed the cause
        outside the form."""
        return not self._errors and not self._inputs

    def recheck_inputs(self) -> None:
        """Look at the disk again (a timer does, every few seconds); tell the form only when it changed."""
        found = _input_errors(self._config) if self._config is not None and not self._errors else {}
        if found != self._inputs:
            self._inputs = found
            self.errorsChanged.emit()

    def has_trainer_errors(self) -> bool:
        return bool(self._external)

    # ------------------------------------------------------------------ changing

    def set_value(self, name: str, value: Any) -> None:
        """A person changed one field."""
        if name not in self._values:
            raise KeyError(name)
        if self._values[name] == value and type(self._values[name]) is type(value):
            return
        old_mode = self.mode
        old_architecture = str(self._values["model.architecture"])
        self._values[name] = value
        self._external.pop(name, None)
        self.valueChanged.emit(name, value)
        if name == "mode":
            self._follow_mode(str(value))
        if str(self._values["model.architecture"]) != old_architecture:
            self._follow_family(old_architecture, str(self._values["model.architecture"]))
        if self.mode != old_mode:
            self.modeChanged.emit(self.mode)
        self._validate()

    def _follow_family(self, old: str, new: str) -> None:
        """A sampling setting still at the old family's usual value takes the new family's (Flux draws at guidance
        3.5, Stable Diffusion 1.5 at 7.5); one the person chose stays."""
        defaults = {f"sampling.{key}": default for key, default in SAMPLING_DEFAULTS.items()}
        for name, config_default in defaults.items():
            key = name.removeprefix("sampling.")
            before = FAMILIES[old].sample_defaults.get(key, config_default) if old in FAMILIES else config_default
            after = FAMILIES[new].sample_defaults.get(key, config_default) if new in FAMILIES else config_default
            if before != after and self._values.get(name) == before:
                self._values[name] = type(config_default)(after)
                self._external.pop(name, None)
                self.valueChanged.emit(name, self._values[name])
        # LoRA targets left at the old family's default take the new one's (HiDream has no ``to_out.0``).
        default_targets = LoraConfig.model_fields["target_modules"].default_factory()
        before_targets, after_targets = (list(FAMILIES[name].lora_targets or default_targets) if name in FAMILIES
                                         else default_targets for name in (old, new))
        if before_targets != after_targets and list(self._values.get("lora.target_modules", ())) == before_targets:
            self._values["lora.target_modules"] = after_targets
            self._external.pop("lora.target_modules", None)
            self.valueChanged.emit("lora.target_modules", after_targets)

    def _follow_mode(self, mode: str) -> None:
        """Choosing what to train picks an architecture it works with: the toy network is its own
        architecture; a Stable Diffusion mode chosen while the toy is set goes back to the last SD one."""
        architecture = str(self._values["model.architecture"])
        if not is_toy(architecture):
            self._last_sd_architecture = architecture
        if mode in MODES_BY_ARCHITECTURE.get(architecture, ()):
            return
        fitting = [name for name, modes in MODES_BY_ARCHITECTURE.items() if mode in modes]
        target = self._last_sd_architecture if self._last_sd_architecture in fitting else fitting[0]
        self._values["model.architecture"] = target
        self._external.pop("model.architecture", None)
        self.valueChanged.emit("model.architecture", target)

    def load(self, config: Config) -> None:
        """Replace every value (a preset was chosen, or the project was reopened)."""
        old_mode = self.mode
        self._values = flatten(config)
        self._external.clear()
        for name in FIELDS:
            self.valueChanged.emit(name, self._values[name])
        if self.mode != old_mode:
            self.modeChanged.emit(self.mode)
        self._validate()

    def set_external_error(self, name: str, message: str) -> None:
        """An error reported from outside the form (the trainer refused this field)."""
        field = owning_field(name)
        if field == "concepts" and name != field:
            message = f"{name}: {message}"  # which concept, and which of its fields
        self._external[field] = message
        self.errorsChanged.emit()

    def clear_external_errors(self) -> None:
        if self._external:
            self._external.clear()
            self.errorsChanged.emit()

    def _validate(self) -> None:
        previous = self._config
        try:
            config = config_from_dict(unflatten(self._values))
        except ConfigError as exc:
            self._errors = _errors_by_field(exc)
            self._inputs = {}
        else:
            self._errors = {}
            self._config = config
            self._inputs = _input_errors(config)
        self.errorsChanged.emit()
        if not self._errors and self._config != previous:
            self.configChanged.emit(self._config)


def flatten(config: Config) -> dict[str, Any]:
    data = config.to_dict()
    values: dict[str, Any] = {}
    for name in FIELDS:
        section, _, key = name.rpartition(".")
        values[name] = data[section][key] if section else data[key]
    return values


def unflatten(values: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, value in values.items():
        section, _, key = name.rpartition(".")
        (data.setdefault(section, {}) if section else data)[key] = value
    return data


def owning_field(location: str) -> str:
    """The value a problem belongs to: ``sampling.seeds[1]`` → ``sampling.seeds``, ``concepts[0].path`` →
    ``concepts``; ``""`` when none does."""
    name = location
    while name and name not in FIELDS:
        name = re.sub(r"\[\d+\]$", "", name) if name.endswith("]") else name.rpartition(".")[0]
    return name


def _errors_by_field(error: ConfigError) -> dict[str, str]:
    """Map each problem to its field; list items ("sampling.seeds[1]", "concepts[0].path") belong to their
    list, and keep their location in the message when it is more than the list item."""
    result: dict[str, str] = {}
    for location, message in error.by_field().items():
        name = owning_field(location)
        if (name == "concepts" and location != name) or (not name and location):
            message = f"{location}: {message}"
        result[name] = f"{result[name]}; {message}" if name in result else message
    return result


def _input_errors(config: Config) -> dict[str, str]:
    """``trainer.preflight``'s findings, by the field that owns them (as the config's own errors are)."""
    problems = input_problems(config)
    return _errors_by_field(ConfigError([f"{name}: {message}" for name, message in problems.items()])) \
        if problems else {}
