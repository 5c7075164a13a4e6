"""The encoder interface, after TigerVNC's rfb/Encoder.h.

An encoder declares what it is (encoding number, lossy or not, the largest
palette it makes use of) and writes the payload of one rectangle it is
handed, already converted to the client's pixel values and analysed by the
manager. Choosing an encoder is the manager's job, never the encoder's.
Encoders keep per-connection state only (zlib streams, levels): the pixel
format travels with each rectangle.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from agent.models import Matrix
from agent.rfb.pixels import PixelCodec


class EncoderError(Exception):
    """The caller asked for something the client did not negotiate, or gave a bad rectangle."""



@dataclass
class RectInput:
    """One rectangle as the manager hands it to an encoder."""

    x: int
    y: int
    w: int
    h: int
    values: np.ndarray
    """(h, w) uint32 pixel values in the client's format; rows may be strided."""
    bgra: np.ndarray
    """(h, w, 4) the same pixels from the frame (JPEG compresses these)."""
    codec: PixelCodec
    palette: np.ndarray | None
    """Distinct colours, most frequent first; None when there are more than were analysed."""
    runs: int
    """Runs of equal pixels in raster order."""

    @property
    def area(self) -> int:
        return self.w * self.h


class Encoder(ABC):
    """Writes one rectangle's payload in one RFB encoding."""

    encoding: ClassVar[int]
    name: ClassVar[str]
    lossy: ClassVar[bool] = False
    max_palette: ClassVar[int] = 0
    """Largest palette this encoder benefits from; 0 when it ignores palettes."""

    matrices: Sequence[Matrix] = ()
    """Byte matrices in the last payload ``encode`` returned (agent.models.Matrix), which the secure
    channel may send in stripes; empty for encoders that report none."""

    def set_compress_level(self, level: int | None) -> None:
        """The client's compression-level pseudo-encoding (0..9) or None; encoders without levels ignore it."""

    @abstractmethod
    def encode(self, rect: RectInput) -> bytes | None:
        """The payload (no header) for ``rect``, or None when this encoder would do worse than Raw."""
