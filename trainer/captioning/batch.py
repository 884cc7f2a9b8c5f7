"""Captioning a set of images: which get a caption, how it joins the one they have, and an undo for the batch
(light: no torch).

Modes: ``fill`` captions only the images without one (no caption file, or an empty one); ``replace`` writes the
new caption over any old one; ``append`` adds it after the old one (", " between).  The prefix and suffix are
written as they are typed around the new caption (the instance token: ``prefix="sks dog, "``).  Each caption
file is written atomically beside its image; the :class:`CaptionJournal` holds every file's text from before,
so one undo puts the whole batch back (files that did not exist are removed again).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trainer.dataset.captions import CaptionStatus, read_caption
from trainer.fsutil import atomic_write_text

Mode = Literal["fill", "replace", "append"]
MODES: tuple[str, ...] = ("fill", "replace", "append")


@dataclass(frozen=True)
class CaptionJob:
    mode: Mode = "fill"
    prefix: str = ""
    suffix: str = ""
    caption_extension: str = ".txt"

    def caption_file(self, image: Path) -> Path:
        return image.with_suffix(self.caption_extension)

    def wants(self, image: Path) -> bool:
        """Whether ``image`` gets a caption in this mode (fill: only where there is none; a caption file that cannot
        be read is wanted too, to be reported and left alone)."""
        return self.mode != "fill" or read_caption(self.caption_file(image)).status is not CaptionStatus.OK

    def joined(self, old: str | None, new: str) -> str:
        text = f"{self.prefix}{new.strip()}{self.suffix}".strip()
        if self.mode == "append" and old:
            return f"{old.rstrip().rstrip(',')}, {text}"
        return text


@dataclass
class CaptionJournal:
    """What a batch changed: each caption file with its text before (None: it did not exist)."""

    before: dict[str, str | None] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # caption files left alone, with why

    def record(self, path: Path, old: str | None, new: str) -> None:
        self.before.setdefault(str(path), old)  # the first write's "before" is the one to go back to
        self.after[str(path)] = new

    def undo(self) -> list[Path]:
        """Put every caption file back as it was before the batch; returns the files touched."""
        touched = []
        for name, old in self.before.items():
            path = Path(name)
            if old is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write_text(path, old)
            touched.append(path)
        return touched

    def to_json(self) -> str:
        return json.dumps({"before": self.before, "after": self.after}, ensure_ascii=False)

    @staticmethod
    def from_json(text: str) -> CaptionJournal:
        data = json.loads(text)
        return CaptionJournal(dict(data["before"]), dict(data["after"]))


UNREADABLE_IMAGE = "has an image that cannot be read"


def caption_images(images: Iterable[Path], caption: Callable[[Path], str | None], job: CaptionJob,
                   progress: Callable[[int, int, Path, str], None] | None = None,
                   cancelled: Callable[[], bool] = lambda: False, write: bool = True) -> CaptionJournal:
    """Caption each image the mode wants (``caption(image)`` gives the model's text, None for an image that cannot
    be read: its caption is left alone) and write it; stops between
    images when ``cancelled()`` — what is written stays, and the journal undoes it.  ``progress(done, total,
    image, caption)`` after each.  ``write=False``: a preview, nothing written (the journal holds the texts)."""
    wanted = [image for image in images if job.wants(image)]
    journal = CaptionJournal()
    for done, image in enumerate(wanted, start=1):
        if cancelled():
            break
        path = job.caption_file(image)
        current = read_caption(path)
        if current.problem is not None:  # a folder, a pipe, unreadable: never written over
            journal.skipped[str(path)] = current.problem
            continue
        old_text = current.text if current.status in (CaptionStatus.OK, CaptionStatus.EMPTY) else None
        text = caption(image)
        if text is None:
            journal.skipped[str(path)] = UNREADABLE_IMAGE
            continue
        new = job.joined(old_text, text)
        if write:
            atomic_write_text(path, new)
        journal.record(path, old_text, new)
        if progress is not None:
            progress(done, len(wanted), image, new)
    return journal
