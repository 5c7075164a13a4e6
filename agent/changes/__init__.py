"""What changed on screen: the change detector (copies and rectangles per frame) and each viewer's update tracker.

The detector runs once per captured frame; every connection has its own
tracker that accumulates what that viewer lacks until it asks for an update.
Neither knows anything of encoders or the wire.
"""
from agent.changes.detector import ChangeDetector, Changes, DetectStats, FrameSizeError
from agent.changes.tracker import UpdateTracker

__all__ = ["ChangeDetector", "Changes", "DetectStats", "FrameSizeError", "UpdateTracker"]
