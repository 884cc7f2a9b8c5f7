"""A project's concepts, one shape for all of them: what the engine, the class-images task and the
Dataset page read.

The config keeps the first concept where it always was (``dataset.*`` for the subject,
``dreambooth.class_*`` for its class set), so every older config trains unchanged; the
``[[concepts]]`` tables add more.  :func:`concepts_of` puts them side by side with the field
names to quote in messages, so no caller needs to know which concept lives where.

Light (the config and the standard library only): the GUI process imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.config import Config
from trainer.dataset.captions import fill_template


@dataclass(frozen=True)
class Concept:
    index: int  # 0 = dataset.* / dreambooth.class_*, n = concepts[n - 1]
    name: str  # as configured; empty = the folder's name (see ``title``)
    path: str
    instance_token: str
    caption_template: str
    repeats: int
    resolution: int  # resolved: a concept's 0 is the dataset's resolution
    class_dir: str
    class_prompt: str
    num_class_images: int
    prefix: str  # "dataset" or "concepts[0]": where this concept's subject fields live
    class_prefix: str  # "dreambooth" or "concepts[0]": where its class fields live

    @property
    def title(self) -> str:
        """What people see: the name, else the folder's name, else a placeholder."""
        return self.name or (Path(self.path).name if self.path else "") or f"concept {self.index + 1}"

    @property
    def default_prompt(self) -> str:
        """The caption an image without one gets: the template with this concept's token."""
        return fill_template(self.caption_template, self.instance_token)

    def field(self, name: str) -> str:
        """The dotted config name of one of this concept's fields, e.g. ``concepts[0].repeats``."""
        prefix = self.class_prefix if name in ("class_dir", "class_prompt", "num_class_images") else self.prefix
        return f"{prefix}.{name}"

    def has_class_set(self, config: Config) -> bool:
        """Does prior preservation use a class set for this concept?

        The first concept always has one in DreamBooth with prior preservation (an empty
        ``dreambooth.class_dir`` is refused, as before); a further concept has one when it names a
        class folder — a concept may well be trained without.
        """
        if config.mode != "dreambooth" or not config.dreambooth.prior_preservation:
            return False
        return self.index == 0 or bool(self.class_dir)


def concepts_of(config: Config) -> list[Concept]:
    """Every concept of ``config``, the first one (``dataset.*``) first."""
    d, db = config.dataset, config.dreambooth
    first = Concept(0, d.name, d.path, d.instance_token, d.caption_template, d.repeats, d.resolution,
                    db.class_dir, db.class_prompt, db.num_class_images, "dataset", "dreambooth")
    more = [Concept(i + 1, c.name, c.path, c.instance_token, c.caption_template, c.repeats,
                    c.resolution or d.resolution, c.class_dir, c.class_prompt, c.num_class_images,
                    f"concepts[{i}]", f"concepts[{i}]") for i, c in enumerate(config.concepts)]
    return [first, *more]
