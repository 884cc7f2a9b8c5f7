"""Child for the torn-message test: starts a message on the events pipe and dies mid-way."""

from __future__ import annotations

import os
import struct


def write_half_a_message_and_die(commands: object, events: object) -> None:
    writer = events._writer  # type: ignore[attr-defined]
    # A frame header announcing 100 kB, then only 10 bytes of it: what a SIGKILL mid-send leaves.
    os.write(writer.fileno(), struct.pack("!i", 100_000) + b"0123456789")
    os._exit(9)
