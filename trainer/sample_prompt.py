"""Sample prompts with their own options, in the syntax kohya's sample-prompt files use (light: no torch).

A line of ``sampling.prompts`` is a prompt, optionally followed by options that override the Sampling
section's defaults for that prompt alone:

    a photo of sks dog on a beach --n blurry, lowres --l 5.5 --s 30 --d 7 --w 768 --h 512 --ss euler_a

``--n`` negative prompt, ``--l`` guidance (CFG) scale, ``--s`` steps, ``--d`` seed(s) (``--d 1,2,3``),
``--w``/``--h`` size, ``--ss`` sampler.  People bring these lines from kohya's ``--sample_prompts`` files, so the
same letters mean the same things; an option Kamaal does not know is refused by name instead of being drawn
into the image as words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

# The samplers a DDPM family (SD 1.x/2.x, SDXL) may draw its previews with: config name → (diffusers scheduler
# class, its options), as kohya's and A1111's sampler names map onto diffusers' schedulers.  "default" is the
# family's own (DDIM for previews).  Flow-matching families draw with their model's own scheduler only: its
# shift and dynamic shifting are part of how the model was trained.
SAMPLERS: dict[str, tuple[str, dict[str, object]]] = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm++_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++_2m_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                        "use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
}
SAMPLER_NAMES: tuple[str, ...] = ("default", *SAMPLERS)

_OPTION = re.compile(r"(?:^|\s)--(\w+)(?=\s|$)")
_OPTIONS = {"n": "negative prompt", "l": "guidance scale", "s": "steps", "d": "seed", "w": "width", "h": "height",
            "ss": "sampler"}
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class SamplePrompt:
    """One prompt line, with what it overrides (None: the Sampling section's value)."""

    line: str  # as written: what the sample grid and the files' names show
    text: str
    negative: str | None = None
    guidance: float | None = None
    steps: int | None = None
    seeds: tuple[int, ...] | None = None
    width: int | None = None
    height: int | None = None
    sampler: str | None = None

    def resolved(self, *, negative: str, guidance: float, steps: int, seeds: tuple[int, ...], width: int,
                 height: int, sampler: str) -> SamplePrompt:
        """Every option filled: the line's own where it sets one, else the given defaults."""
        return replace(self, negative=negative if self.negative is None else self.negative,
                       guidance=guidance if self.guidance is None else self.guidance,
                       steps=steps if self.steps is None else self.steps,
                       seeds=seeds if self.seeds is None else self.seeds,
                       width=width if self.width is None else self.width,
                       height=height if self.height is None else self.height,
                       sampler=sampler if self.sampler is None else self.sampler)


def parse_sample_prompt(line: str) -> SamplePrompt:
    """The prompt and options of one line; ``ValueError`` saying which option is wrong and why."""
    marks = list(_OPTION.finditer(line))
    text = (line[:marks[0].start()] if marks else line).strip()  # may be empty: an unconditional sample
    values: dict[str, object] = {}
    for mark, following in zip(marks, [*marks[1:], None], strict=False):
        letter = mark.group(1)
        raw = line[mark.end():following.start() if following else len(line)].strip()
        if letter not in _OPTIONS:
            known = ", ".join(f"--{k} ({v})" for k, v in _OPTIONS.items())
            raise ValueError(f"unknown option --{letter} (known: {known})")
        if letter in values:
            raise ValueError(f"--{letter} is given twice")
        if not raw and letter != "n":
            raise ValueError(f"--{letter} ({_OPTIONS[letter]}) needs a value")
        values[letter] = _value(letter, raw)
    return SamplePrompt(line=line.strip(), text=text, negative=values.get("n"), guidance=values.get("l"),
                        steps=values.get("s"), seeds=values.get("d"), width=values.get("w"),
                        height=values.get("h"), sampler=values.get("ss"))


def _value(letter: str, raw: str) -> object:
    name = _OPTIONS[letter]
    if letter == "n":
        return raw
    if letter == "ss":
        if raw not in SAMPLER_NAMES:
            raise ValueError(f"--ss: unknown sampler {raw!r} (choose one of {', '.join(SAMPLER_NAMES)})")
        return raw
    if letter == "l":
        try:
            scale = float(raw)
        except ValueError:
            raise ValueError(f"--l ({name}) needs a number, got {raw!r}") from None
        if not 0 <= scale <= 50:
            raise ValueError(f"--l ({name}) must be from 0 to 50, got {raw}")
        return scale
    if letter == "d":
        try:
            seeds = tuple(int(part) for part in raw.replace(" ", "").split(","))
        except ValueError:
            raise ValueError(f"--d (seed) needs whole numbers separated by commas, got {raw!r}") from None
        if any(not 0 <= seed <= MAX_SEED for seed in seeds):
            raise ValueError(f"--d (seed): each seed must be from 0 to 2^63 − 1, got {raw}")
        return seeds
    try:
        number = int(raw)
    except ValueError:
        raise ValueError(f"--{letter} ({name}) needs a whole number, got {raw!r}") from None
    if letter == "s" and not 1 <= number <= 1000:
        raise ValueError(f"--s (steps) must be from 1 to 1000, got {number}")
    if letter in "wh" and not (64 <= number <= 4096 and number % 8 == 0):
        raise ValueError(f"--{letter} ({name}) must be a multiple of 8 from 64 to 4096, got {number}")
    return number
