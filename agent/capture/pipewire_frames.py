"""Frames from a GStreamer pipeline ending in an appsink, as numpy views of the mapped buffers.

For GNOME the pipeline is ``pipewiresrc path=NODE ! videoconvert !
video/x-raw,format=BGRx ! appsink``: Mutter offers BGRx in shared memory, so
videoconvert passes the buffers through untouched and pipewiresrc wraps the
PipeWire buffer without copying (``always-copy=false``). PyGObject's
``Gst.Buffer.map`` would copy every frame into a ``bytes``; instead the newest
sample is pulled and mapped through ctypes (GStreamer's stable C ABI:
``gst_app_sink_try_pull_sample``, ``gst_buffer_map``) and the frame is a
read-only numpy view of the mapped memory. The view owns the mapping: the
buffer is unmapped and handed back to PipeWire only when the last array
viewing it is collected, so a frame stays valid (and unchanged: PipeWire does
not reuse a buffer we hold) for as long as anyone keeps it. A buffer whose
rows are padded (a stride wider than the width) cannot be one C-contiguous
view: it is copied, and ``fallback_reason`` says so.

Pacing is the stream's own: Mutter sends a buffer only when the monitor was
redrawn, so an idle screen delivers nothing. appsink keeps only the newest
sample (``max-buffers=1 drop=true``); its "new-sample" signal (one Python call
per frame, never per pixel) sets ``pending`` and writes a byte to a pipe, so a
capture loop can sleep on ``fileno()`` until the screen changes. Each sample's
caps give its size, so a resized monitor simply yields frames of the new size.
"""
from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from typing import Any

import numpy as np

from agent.errors import CaptureError

log = logging.getLogger(__name__)

FIRST_FRAME_TIMEOUT = 10.0
GST_MAP_READ = 1
_SECOND_NS = 1_000_000_000


def pipewire_pipeline(node_id: int, fd: int | None = None) -> str:
    """The pipeline for a PipeWire video node (``fd``: a portal's OpenPipeWireRemote socket)."""
    remote = f" fd={int(fd)}" if fd is not None else ""
    return (f"pipewiresrc path={int(node_id)}{remote} always-copy=false ! videoconvert ! "
            "video/x-raw,format=BGRx ! appsink name=sink max-buffers=1 drop=true sync=false emit-signals=true")


class _MapInfo(ctypes.Structure):
    _fields_ = [("memory", ctypes.c_void_p), ("flags", ctypes.c_int), ("data", ctypes.c_void_p),
                ("size", ctypes.c_size_t), ("maxsize", ctypes.c_size_t), ("user_data", ctypes.c_void_p * 4),
                ("_gst_reserved", ctypes.c_void_p * 4)]


class _VideoMeta(ctypes.Structure):  # GstVideoMeta, up to the plane strides (GStreamer >= 1.0)
    _fields_ = [("meta_flags", ctypes.c_int), ("meta_info", ctypes.c_void_p), ("buffer", ctypes.c_void_p),
                ("flags", ctypes.c_int), ("format", ctypes.c_int), ("id", ctypes.c_uint), ("width", ctypes.c_uint),
                ("height", ctypes.c_uint), ("n_planes", ctypes.c_uint), ("offset", ctypes.c_size_t * 4),
                ("stride", ctypes.c_int * 4)]


class _Lib:
    """The few GStreamer C functions we call directly (loaded once)."""

    _instance: "_Lib | None" = None

    def __init__(self) -> None:
        gst = ctypes.CDLL("libgstreamer-1.0.so.0")
        app = ctypes.CDLL("libgstapp-1.0.so.0")
        video = ctypes.CDLL("libgstvideo-1.0.so.0")
        vp, u64, ci = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int
        self.pull = _fn(app.gst_app_sink_try_pull_sample, vp, [vp, u64])
        self.get_buffer = _fn(gst.gst_sample_get_buffer, vp, [vp])
        self.get_caps = _fn(gst.gst_sample_get_caps, vp, [vp])
        self.caps_structure = _fn(gst.gst_caps_get_structure, vp, [vp, ctypes.c_uint])
        self.structure_int = _fn(gst.gst_structure_get_int, ci, [vp, ctypes.c_char_p, ctypes.POINTER(ci)])
        self.unref = _fn(gst.gst_mini_object_unref, None, [vp])
        self.map = _fn(gst.gst_buffer_map, ci, [vp, ctypes.POINTER(_MapInfo), ci])
        self.unmap = _fn(gst.gst_buffer_unmap, None, [vp, ctypes.POINTER(_MapInfo)])
        self.video_meta = _fn(video.gst_buffer_get_video_meta, ctypes.POINTER(_VideoMeta), [vp])

    @classmethod
    def get(cls) -> "_Lib":
        if cls._instance is None:
            try:
                cls._instance = cls()
            except OSError as exc:
                raise CaptureError(f"GStreamer's C libraries cannot be loaded ({exc}): "
                                   "apt-get install libgstreamer1.0-0 gstreamer1.0-plugins-base") from None
        return cls._instance


def _fn(f: Any, restype: Any, argtypes: list[Any]) -> Any:
    f.restype, f.argtypes = restype, argtypes
    return f


def frame_layout(size: int, width: int, height: int, stride: int | None = None,
                 offset: int = 0) -> tuple[int, int, bool]:
    """(stride, offset, contiguous) of a packed 4-byte-per-pixel image in a buffer of ``size`` bytes.

    ``stride``/``offset`` come from the buffer's video meta when it has one;
    otherwise the rows are packed. ValueError when the buffer is too small.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"bad frame size {width}x{height}")
    row = width * 4
    stride = row if stride is None else stride
    if stride < row:
        raise ValueError(f"stride {stride} is narrower than a {width}-pixel row")
    if offset < 0 or offset + stride * (height - 1) + row > size:
        raise ValueError(f"a {width}x{height} frame (stride {stride}, offset {offset}) does not fit "
                         f"in {size} bytes")
    return stride, offset, stride == row


class _Mapped:
    """One pulled sample, mapped for reading, and the frame that views it.

    The numpy frame keeps this object alive (through the ctypes array under
    it); when the last view goes, ``__del__`` unmaps the buffer and drops the
    sample, returning the buffer to PipeWire's pool.
    """

    def __init__(self, lib: _Lib, sample: int) -> None:
        self.lib, self.sample, self.buffer = lib, sample, lib.get_buffer(sample)
        self.info = _MapInfo()
        self.mapped = bool(self.buffer) and bool(lib.map(self.buffer, ctypes.byref(self.info), GST_MAP_READ))
        if not self.mapped:
            self.release()
            raise CaptureError("GStreamer could not map a PipeWire buffer for reading")
        width, height = self._caps_size()
        meta = lib.video_meta(self.buffer)
        stride = offset = None
        if meta:
            stride, offset = int(meta.contents.stride[0]), int(meta.contents.offset[0])
        try:
            stride, offset, packed = frame_layout(self.info.size, width, height, stride, offset or 0)
        except ValueError as exc:
            self.release()
            raise CaptureError(f"unusable PipeWire buffer: {exc}") from None
        raw = (ctypes.c_uint8 * self.info.size).from_address(self.info.data)
        pixels = np.frombuffer(raw, dtype=np.uint8)
        if packed:
            raw._mapping = self  # the views keep the mapping; the mapping does not keep them
            frame = pixels[offset:offset + width * height * 4].reshape(height, width, 4)
            self.copied = None
        else:
            rows = np.lib.stride_tricks.as_strided(pixels[offset:], shape=(height, width, 4), strides=(stride, 4, 1))
            frame = np.ascontiguousarray(rows)
            self.copied = f"rows padded to a stride of {stride} bytes for {width} pixels: each frame is copied"
            self.release()
        frame.flags.writeable = False
        self.frame: np.ndarray | None = frame

    def __del__(self) -> None:
        self.release()

    def _caps_size(self) -> tuple[int, int]:
        lib = self.lib
        caps = lib.get_caps(self.sample)
        structure = lib.caps_structure(caps, 0) if caps else None
        w, h = ctypes.c_int(0), ctypes.c_int(0)
        if not structure or not (lib.structure_int(structure, b"width", ctypes.byref(w))
                                 and lib.structure_int(structure, b"height", ctypes.byref(h))):
            self.release()
            raise CaptureError("a PipeWire sample came without a frame size in its caps")
        return w.value, h.value

    def release(self) -> None:
        if self.mapped:
            self.lib.unmap(self.buffer, ctypes.byref(self.info))
            self.mapped = False
        if self.sample:
            self.lib.unref(self.sample)
            self.sample = 0


class AppSinkFrames:
    """Runs ``pipeline`` (with an appsink named "sink") and hands out its newest frame."""

    def __init__(self, pipeline: str, *, first_frame_timeout: float | None = FIRST_FRAME_TIMEOUT) -> None:
        """Start ``pipeline`` and wait up to ``first_frame_timeout`` for its first frame (None: do not wait)."""
        from agent.capture.gi_support import gobject_pointer, load_gst

        self._Gst, _ = load_gst()
        Gst = self._Gst
        self._lib = _Lib.get()
        self._lock = threading.Lock()
        self._pending = False
        self._current: np.ndarray | None = None
        self.fallback_reason: str | None = None
        self.frames = 0  # samples taken
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        os.set_blocking(self._wfd, False)
        try:
            self._pipeline = Gst.parse_launch(pipeline)
        except Exception as exc:  # GLib.Error: a missing element or a bad description
            self._close_fds()
            raise CaptureError(f"cannot build the GStreamer pipeline: {_first_line(exc)}") from None
        self._bus = self._pipeline.get_bus()
        sink = self._pipeline.get_by_name("sink")
        if sink is None:
            self.close()
            raise CaptureError("the GStreamer pipeline has no appsink named 'sink'")
        self._sink = sink
        self._sink_ptr = gobject_pointer(sink)
        sink.connect("new-sample", self._on_sample)
        try:
            if self._pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
                self._raise_bus_error("the PipeWire stream would not start")
            if first_frame_timeout is not None:
                self._take_first(first_frame_timeout)
        except BaseException:
            self.close()
            raise

    def _on_sample(self, sink: Any) -> Any:
        """Streaming thread: a new frame is waiting (pulled later, by ``latest``)."""
        with self._lock:
            if not self._pending and self._wfd >= 0:
                self._pending = True
                try:
                    os.write(self._wfd, b"\0")
                except BlockingIOError:
                    pass
        return self._Gst.FlowReturn.OK

    def _take_first(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._current is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CaptureError(f"the PipeWire stream sent no frame within {timeout:g} s")
            self._check_bus()
            sample = self._lib.pull(self._sink_ptr, int(min(left, 0.1) * _SECOND_NS))
            if sample:
                self._install(sample)

    def _install(self, sample: int) -> None:
        mapped = _Mapped(self._lib, sample)
        # the frame keeps the mapping alive, not the other way round (no cycle: freed by refcount);
        # the previous frame is released when its last viewer lets go
        self._current, mapped.frame = mapped.frame, None
        self.frames += 1
        self.fallback_reason = mapped.copied

    def _check_bus(self) -> None:
        Gst = self._Gst
        message = self._bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.EOS)
        if message is not None:
            if message.type == Gst.MessageType.EOS:
                raise CaptureError("the PipeWire stream ended (the shared monitor or session went away)")
            err, _ = message.parse_error()
            raise CaptureError(f"the PipeWire stream failed: {_first_line(err)}")

    def _raise_bus_error(self, fallback: str) -> None:
        self._check_bus()
        raise CaptureError(fallback)

    # ------------------------------------------------------------------ the source's side
    @property
    def pending(self) -> bool:
        """A frame arrived since the last ``latest()``."""
        return self._pending

    def fileno(self) -> int:
        """Readable while a frame is pending."""
        return self._rfd

    @property
    def size(self) -> tuple[int, int]:
        if self._current is None:
            return (0, 0)
        h, w = self._current.shape[:2]
        return (w, h)

    def latest(self) -> np.ndarray:
        """The newest frame: a new one if the stream sent one, else the last again (still mapped)."""
        if self._pipeline is None:
            raise CaptureError("this PipeWire stream was closed")
        with self._lock:
            self._pending = False
            try:
                while os.read(self._rfd, 4096):
                    pass
            except BlockingIOError:
                pass
        self._check_bus()
        sample = self._lib.pull(self._sink_ptr, 0)
        if sample:
            self._install(sample)
        if self._current is None:
            raise CaptureError("the stream has sent no frame yet")
        return self._current

    def close(self) -> None:
        pipeline, self._pipeline = getattr(self, "_pipeline", None), None
        if pipeline is not None:
            pipeline.set_state(self._Gst.State.NULL)
        self._current = None  # frames still held elsewhere stay valid until collected
        self._close_fds()

    def _close_fds(self) -> None:
        with self._lock:
            for name in ("_rfd", "_wfd"):
                fd = getattr(self, name, -1)
                if fd >= 0:
                    os.close(fd)
                    setattr(self, name, -1)


def _first_line(exc: Any) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
