"""Typed interface of agent/_native/xgrab.pyx (XShmGetImage and DAMAGE's region, requested from C)."""
import numpy as np

class Xcb:
    def __init__(self, conn: int, send_request: int, request_check: int, fetch_region: int,
                 fetch_region_reply: int, shm_get_image: int, shm_get_image_reply: int) -> None: ...
    def take_damage(self, vector: int, request: int, body: int, body_size: int,
                    region: int) -> list[tuple[int, int, int, int]]: ...
    def grab(self, frame: np.ndarray, rects: object, base: np.ndarray | None, drawable: int, shmseg: int,
             segment: int, segment_size: int) -> list[tuple[int, int, int, int]]: ...
