"""One viewer's update logic: what to send, when (DESIGN §2; TigerVNC's VNCSConnectionST).

A ViewerUpdater ties together, for ONE viewer, its RFBServer connection, its
UpdateTracker (what the viewer has not seen yet) and its EncodeManager
(encoder state). It is fed every captured frame with the detector's changes,
and the viewer's events; ``write_update(now)`` then writes at most one
FramebufferUpdate into the server's outgoing buffer. RFB is pull-based: a
slow viewer simply asks less often and the tracker coalesces what it missed.
Through our own viewer bridge a request *stands* (C.ENC_STANDING_REQUEST):
once the first is in, updates go as changes come, as with ContinuousUpdates
over the whole screen, and the flow-control window (``may_send``) is what
holds them back; the bridge answers the local viewer's repeated requests
itself, so a typed key costs the customer's PC no request to read.

Sans-IO like the protocol: no clock and no sockets; ``now`` is passed in, so
tests drive it deterministically. The owner sends ``server.data_to_send()``.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from agent.changes.tracker import UpdateTracker
from agent.encode.manager import EncodedUpdate, EncodeManager
from agent.models import (
    Copy,
    CursorShape,
    Matrix,
    Rect,
    rect_intersect,
    rect_union,
    rects_area,
    shift_matrices,
)
from agent.rfb import constants as C
from agent.rfb import messages as M
from agent.rfb import server_messages as SM
from agent.rfb.server import RFBServer, ServerState
from agent.service.priority import ActivityMap, LinkState

LOSSLESS_REFRESH_DELAY = 0.3  # seconds a JPEG-sent area must stay unchanged before its lossless refresh
LATENCY_SAMPLES = 256  # change-to-update latencies kept for the status figures


@dataclass
class UpdateStats:
    """What the session layer observes about one viewer's updates."""

    updates_sent: int = 0
    bytes_sent: int = 0
    rects_sent: int = 0
    refreshes_sent: int = 0  # lossless refreshes of lossy areas
    last_update_time: Optional[float] = None
    # Seconds from a change's capture to the update carrying it leaving the agent, per update
    # (the oldest change it carries); the most recent LATENCY_SAMPLES.
    change_latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    def change_latency(self, quantile: float) -> Optional[float]:
        """A quantile (0.5, 0.95) of the recent change-to-update latencies, in seconds."""
        if not self.change_latencies:
            return None
        ordered = sorted(self.change_latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


@dataclass
class UpdateJob:
    """What one update will carry, taken from the tracker; encoded off the event loop."""

    frame: np.ndarray
    ready: list[bytes]  # rectangles already written (pseudo-encodings)
    copies: list[Copy]
    rects: list[Rect]
    refresh: list[Rect]  # lossy areas to resend losslessly
    later: list[Rect] = field(default_factory=list)  # pending areas this update leaves for the next

    @property
    def pixels(self) -> int:
        """Pixels to encode (copies cost nothing): small jobs are cheaper encoded than handed to a thread."""
        return rects_area(self.rects) + rects_area(self.refresh)


@dataclass
class EncodedJob:
    rects: list[bytes]
    lossy: list[Rect] = field(default_factory=list)
    matrices: list[Matrix] = field(default_factory=list)
    """Byte matrices in the rectangles joined (EncodedUpdate.matrices), for the channel's stripes."""

    def add(self, update: EncodedUpdate) -> None:
        self.matrices += shift_matrices(update.matrices, sum(map(len, self.rects)))
        self.rects += update.rects


class ViewerUpdater:
    """Per-viewer update state machine; see the module docstring."""

    def __init__(self, server: RFBServer, *, manager: Optional[EncodeManager] = None,
                 may_send: Optional[Callable[[], bool]] = None,
                 link: Optional[Callable[[], Optional[LinkState]]] = None,
                 link_sent: Optional[Callable[[], Optional[int]]] = None) -> None:
        self.server = server
        self.manager = manager if manager is not None else EncodeManager()
        self.tracker = UpdateTracker(server.width, server.height)
        self.tracker.mark_all()  # a new viewer has seen nothing
        self.may_send: Callable[[], bool] = may_send if may_send is not None else (lambda: True)
        # The link as flow control sees it (None: unknown, e.g. plain TCP): paces the bulk while interacting.
        self.link: Callable[[], Optional[LinkState]] = link if link is not None else (lambda: None)
        self._link_sent = link_sent  # the link's ``sent`` alone (None: read from ``link``)
        self.activity = ActivityMap(server.width, server.height)
        # Send an input's echo at once even when the viewer has no request outstanding: a viewer that
        # pulls one update at a time otherwise waits a whole round trip after every bulk update. Only
        # where we own the path (a session's channel); see README "What the technician does goes first".
        self.push_echoes = False
        self._held = False  # areas wait for the update budget to refill (agent.service.priority)
        self._bulk_wait = -math.inf  # ...and until then nothing but them is owed: no planning needed
        self.frame: Optional[np.ndarray] = None
        self.stats = UpdateStats()
        self.on_update: Optional[Callable[[UpdateStats], None]] = None
        self.close_reason: Optional[str] = None  # set when the viewer must be disconnected
        self._requested: Optional[Rect] = None  # outstanding FramebufferUpdateRequest region
        self._empty_reply = False  # a request that covered nothing still gets an (empty) answer
        self._cu_region: Optional[Rect] = None  # continuous updates region, when enabled
        self._standing = False  # the viewer's SetEncodings offered ENC_STANDING_REQUEST (our bridge)
        self._stands = False  # ...and a request came since: it stands
        self._pending_resize = False
        self._pending_resize_reply: Optional[tuple[int, int]] = None  # ExtendedDesktopSize (reason, status) to send
        self._cursor: Optional[CursorShape] = None
        self._cursor_pending = False
        self._recent_lossy: list[tuple[Rect, float]] = []
        self._job: Optional[UpdateJob] = None  # the update being encoded, if any
        self._deferred: list[object] = []  # encoder-affecting events that arrived meanwhile

    # ---------------------------------------------------------------- inputs

    @property
    def size(self) -> tuple[int, int]:
        return self.server.width, self.server.height

    def handle_event(self, event: object) -> None:
        """Apply one event from the server connection that concerns updates; others are ignored."""
        if self._job is not None and isinstance(event, (M.SetPixelFormat, M.SetEncodings)):
            self._deferred.append(event)  # the encoder is busy with an update taken before this event
            return
        if isinstance(event, M.FramebufferUpdateRequest):
            region = event.clipped(*self.size)
            if region is None:
                self._empty_reply = True
                return
            self._requested = rect_union(self._requested, region)
            if self._standing:
                self._stands = True
                self._cu_region = (0, 0) + self.size  # from now on every change goes as it comes
            if not event.incremental:
                self.tracker.add_changed([region])
                if self._pending_resize_reply is None and self.server.supports(C.ENC_EXTENDED_DESKTOP_SIZE):
                    # rfbproto: a full request is how a viewer learns the screen layout, so answer with it.
                    self._pending_resize_reply = (M.EDS_REASON_SERVER, M.EDS_STATUS_OK)
        elif isinstance(event, M.SetPixelFormat):
            self.manager.set_pixel_format(event.pixel_format)
            self.tracker.mark_all()  # pixels the viewer holds were quantised for the old format
        elif isinstance(event, M.SetEncodings):
            self.manager.set_encodings(event.encodings)
            if self._cursor is not None:
                self._cursor_pending = True
            self._standing = C.ENC_STANDING_REQUEST in event.encodings
            if self._stands and not self._standing:
                self._stands, self._cu_region = False, None  # requests count one by one again
        elif isinstance(event, M.EnableContinuousUpdates):
            if event.enable:
                region = M.FramebufferUpdateRequest(True, event.x, event.y, event.width, event.height)
                self._cu_region = region.clipped(*self.size)
            else:  # the server already wrote EndOfContinuousUpdates; a standing request still stands
                self._cu_region = (0, 0) + self.size if self._stands else None
        elif isinstance(event, M.SetDesktopSize):
            # The customer's screen is theirs: a viewer may not resize it.
            if self.server.supports(C.ENC_EXTENDED_DESKTOP_SIZE):
                self._pending_resize_reply = (M.EDS_REASON_CLIENT, M.EDS_STATUS_PROHIBITED)

    def note_input(self, now: float, pointer: Optional[tuple[int, int]] = None) -> None:
        """The technician typed or moved the pointer (``pointer``: where): what changes next goes first."""
        self.activity.note_input(now, pointer)

    def on_frame(self, frame: np.ndarray, changes: Optional[object], now: Optional[float] = None) -> None:
        """A new captured frame (owned by us from now on) and what changed since the previous one.

        ``changes`` is the detector's Changes (``.copies``, ``.rects``) or None
        for "unknown" (the whole screen is then marked). ``now``: when it was
        captured (the clock ``write_update`` gets), for priorities and latency.
        """
        height, width = frame.shape[:2]
        if now is not None:
            if changes is None or (width, height) != self.size:
                self.activity.mark_all_pending(now)
            else:
                self.activity.note_changes(now, changes.copies, changes.rects,  # type: ignore[attr-defined]
                                           getattr(changes, "churn", ()))
        if (width, height) != self.size:
            self.activity.resize(width, height)
            self.tracker.resize(width, height)
            self.server.set_size(width, height)
            self._pending_resize = True
            self._requested = None if self._requested is None else (0, 0, width, height)
            if self._cu_region is not None:
                self._cu_region = (0, 0, width, height)
        elif changes is None:
            self.tracker.mark_all()
        else:
            self.tracker.add_changes(changes)
        self.frame = frame

    def on_cursor(self, cursor: Optional[CursorShape]) -> None:
        if cursor is None:
            return
        if self._cursor is None or cursor.serial != self._cursor.serial:
            self._cursor = cursor
            self._cursor_pending = True

    # ---------------------------------------------------------------- lossless refresh

    def _prune_lossy(self, now: float) -> None:
        self._recent_lossy = [(r, t) for r, t in self._recent_lossy if now - t < LOSSLESS_REFRESH_DELAY]

    def _refresh_rects(self, now: float, region: Rect) -> list[Rect]:
        """Lossy areas that have been left alone long enough, inside ``region``."""
        if not self.manager.has_lossy:
            return []
        self._prune_lossy(now)
        out = []
        for rect in self.manager.lossy_region():
            if any(rect_intersect(rect, recent) for recent, _ in self._recent_lossy):
                continue  # still changing (video): refresh once it settles
            clipped = rect_intersect(rect, region)
            if clipped is not None:
                out.append(clipped)
        return out

    def next_due(self, now: float) -> Optional[float]:
        """When this viewer should be kicked again on its own: a lossless refresh, or areas held back
        while the technician interacts. None: only new frames, requests or the link wake it."""
        due = [t for t in (self.refresh_due_at(now), self.activity.bulk_due(now) if self._held else None)
               if t is not None]
        return min(due, default=None)

    def refresh_due_at(self, now: float) -> Optional[float]:
        """When a lossless refresh becomes due (``now`` if already), or None when nothing is lossy."""
        if not self.manager.has_lossy:
            return None
        self._prune_lossy(now)
        if not self._recent_lossy:
            return now
        return min(t for _, t in self._recent_lossy) + LOSSLESS_REFRESH_DELAY

    # ---------------------------------------------------------------- output

    def idle(self, now: float) -> bool:
        """Nothing for an update now: ``prepare_update(now)`` would return None and change nothing.

        Lets the connection skip waking its sender for a request that arrives
        when everything was sent already (a viewer asks again after every
        update, most often after a pushed echo that answered it): on the
        customer's PC, that wake-up costs more than the request itself."""
        return (self._job is None and self.close_reason is None and not self._pending_resize
                and not self._owed_besides_changes() and not self._held and self.tracker.is_empty()
                and not (self.push_echoes and self.activity.interactive_pending(now)))

    def _owed_besides_changes(self) -> bool:
        """A cursor, a reply or a lossless refresh is owed: an update goes whatever the changes are."""
        return bool(self._cursor_pending or self._empty_reply or self._pending_resize_reply is not None
                    or self.manager.has_lossy)

    @property
    def wants_update(self) -> bool:
        """Whether the viewer currently accepts an update (a request is outstanding or CU is on)."""
        return self._requested is not None or self._cu_region is not None or self._empty_reply

    def write_update(self, now: float) -> int:
        """Write at most one FramebufferUpdate into the server's buffer; returns the bytes written.

        The same as ``prepare_update``, ``encode_job`` and ``finish_update`` in
        a row; the asyncio service runs the middle step in a worker thread.
        """
        job = self.prepare_update(now)
        if job is None:
            return 0
        return self.finish_update(job, self.encode_job(job), now)

    def prepare_update(self, now: float) -> Optional[UpdateJob]:
        """Decide whether to send now and take what is pending; None when there is nothing to do."""
        if self._job is not None:
            return None  # one update at a time
        if self.close_reason is not None or self.server.state is not ServerState.NORMAL or self.frame is None:
            return None  # not ready
        # push: an echo goes now, alone, even with no request outstanding or the window full (it is
        # small, and what the technician waits for); everything else waits for both.
        push = not self.wants_update or not self.may_send()
        if push and not (self.push_echoes and self.activity.interactive_pending(now)):
            return None  # nothing requested, or the link is congested: changes accumulate in the tracker
        if self._pending_resize:
            return None if push else self._resize_job()
        if not push and self.tracker.is_empty() and not self._owed_besides_changes():
            self._held = False
            return None  # the viewer asked before anything changed (after every update): it waits
        if not push and self._held and now < self._bulk_wait and not self.tracker.has_copies() and not (
                self._owed_besides_changes() or self.activity.interactive_pending(now)):
            return None  # only held bulk, and its bucket has not refilled: planning would hold it again
        region = (0, 0) + self.size if push else rect_union(self._requested, self._cu_region)
        copies, rects = self._peek(region)
        plan = self.activity.plan_update(rects, now, self.link(), only_interactive=push)
        if push and not plan.rects:  # the interactive areas' changes went with an earlier update
            self.activity.forget_interactive(now)
            return None
        self.tracker.forget(len(copies), plan.rects)  # plan.later stays pending: the next update takes it
        pseudo = self._pseudo_rects()
        rects, self._held = plan.rects, plan.held or self._held and push
        if plan.held and not push:  # the requests, frames and ACKs before this need not plan again
            self._bulk_wait = self.activity.bulk_due(now)
        if rects and self.manager.has_lossy:
            # Changed since it was sent, so not settled, however long a congested link kept us from
            # sending: a refresh now would resend moving video losslessly and stall the link further.
            self._recent_lossy += [(r, now) for r in rects]
        refresh = self._refresh_rects(now, region) if region is not None and not push else []
        if not (pseudo or copies or rects or refresh or self._empty_reply):
            return None  # nothing pending: the request stays outstanding
        self._job = UpdateJob(self.frame, pseudo, copies, rects, refresh, plan.later)
        return self._job

    def link_sent(self) -> Optional[int]:
        """Link bytes sent so far (None without a session's link): read around an update's flush."""
        if self._link_sent is not None:
            return self._link_sent()
        link = self.link()
        return None if link is None else link.sent

    def learn_link_cost(self, job: UpdateJob, link_bytes: int) -> None:
        """What ``job`` cost on the link once flushed, for the pacing's price per pixel."""
        self.activity.learn_cost(rects_area(job.rects), link_bytes)

    def encode_job(self, job: UpdateJob) -> EncodedJob:
        """Encode a prepared update. Touches only the EncodeManager, which no one else uses meanwhile."""
        out = EncodedJob(list(job.ready))
        if job.copies or job.rects:
            encoded = self.manager.encode(job.frame, job.copies, job.rects)
            out.add(encoded)
            out.lossy = list(encoded.lossy)
        if job.refresh:
            out.add(self.manager.encode(job.frame, [], job.refresh, lossy_allowed=False))
        return out

    def finish_update(self, job: UpdateJob, encoded: EncodedJob, now: float) -> int:
        """Write the encoded update into the server's buffer and apply what waited for it."""
        self._job = None
        self._recent_lossy += [(r, now) for r in encoded.lossy]
        if job.refresh:
            self.stats.refreshes_sent += 1
        latency = self.activity.sent(now, job.copies, job.rects, job.later)
        if latency is not None:
            self.stats.change_latencies.append(latency)
        n = self._send(encoded.rects, now, encoded.matrices)
        deferred, self._deferred = self._deferred, []
        for event in deferred:
            self.handle_event(event)
        return n

    def _peek(self, region: Optional[Rect]) -> tuple[list[Copy], list[Rect]]:
        if region is None or self.tracker.is_empty():
            return [], []
        if not self.server.supports(C.ENC_COPYRECT):
            self.tracker.flatten()  # every destination gets the current pixels: correct whatever the copy order
        whole = region == (0, 0) + self.size
        changes = self.tracker.peek(None if whole else region)
        return list(changes.copies), list(changes.rects)

    def _pseudo_rects(self) -> list[bytes]:
        out = []
        if self._pending_resize_reply is not None:
            reason, status = self._pending_resize_reply
            out.append(SM.write_extended_desktop_size_rect(*self.size, reason=reason, status=status))
            self._pending_resize_reply = None
        if self._cursor_pending and self._cursor is not None and self.server.supports(C.ENC_CURSOR):
            out.append(self.manager.encode_cursor(self._cursor))
        self._cursor_pending = False
        return out

    def _resize_job(self) -> Optional[UpdateJob]:
        width, height = self.size
        if self.server.supports(C.ENC_EXTENDED_DESKTOP_SIZE):
            rect = SM.write_extended_desktop_size_rect(width, height)
        elif self.server.supports(C.ENC_DESKTOP_SIZE):
            rect = SM.write_desktop_size_rect(width, height)
        else:
            self.close_reason = (f"the screen size changed to {width}x{height} and the viewer "
                                 f"does not support the DesktopSize pseudo-encoding")
            return None
        self._pending_resize = False
        # TigerVNC sends the size change alone; the viewer asks again for the new pixels.
        assert self.frame is not None
        self._job = UpdateJob(self.frame, [rect], [], [], [])
        return self._job

    def _send(self, rects: list[bytes], now: float, matrices: Sequence[Matrix] = ()) -> int:
        n = self.server.send_update(rects, matrices)
        self._requested = None
        self._empty_reply = False
        stats = self.stats
        stats.updates_sent += 1
        stats.bytes_sent += n
        stats.rects_sent += len(rects)
        stats.last_update_time = now
        if self.on_update is not None:
            self.on_update(stats)
        return n
