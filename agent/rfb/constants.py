"""RFB numbers from RFC 6143 and the community rfbproto spec, in one place."""
from __future__ import annotations

# Security types (RFC 6143 §7.1.2)
SEC_INVALID = 0
SEC_NONE = 1
SEC_VNC_AUTH = 2

# Client -> server message types (RFC 6143 §7.5)
MSG_SET_PIXEL_FORMAT = 0
MSG_SET_ENCODINGS = 2
MSG_FRAMEBUFFER_UPDATE_REQUEST = 3
MSG_KEY_EVENT = 4
MSG_POINTER_EVENT = 5
MSG_CLIENT_CUT_TEXT = 6
MSG_ENABLE_CONTINUOUS_UPDATES = 150
MSG_CLIENT_FENCE = 248
MSG_SET_DESKTOP_SIZE = 251

# Server -> client message types (RFC 6143 §7.6)
MSG_FRAMEBUFFER_UPDATE = 0
MSG_SET_COLOUR_MAP_ENTRIES = 1
MSG_BELL = 2
MSG_SERVER_CUT_TEXT = 3
MSG_END_OF_CONTINUOUS_UPDATES = 150
MSG_SERVER_FENCE = 248

# Encodings (RFC 6143 §7.7, rfbproto)
ENC_RAW = 0
ENC_COPYRECT = 1
ENC_RRE = 2
ENC_HEXTILE = 5
ENC_TIGHT = 7
ENC_ZRLE = 16

# Pseudo-encodings
ENC_JPEG_QUALITY_0 = -32  # -32..-23: quality level 0..9
ENC_JPEG_QUALITY_9 = -23
ENC_COMPRESS_LEVEL_0 = -256  # -256..-247: compression level 0..9
ENC_COMPRESS_LEVEL_9 = -247
ENC_DESKTOP_SIZE = -223
ENC_LAST_RECT = -224
ENC_CURSOR = -239
ENC_EXTENDED_DESKTOP_SIZE = -308
ENC_FENCE = -312
ENC_CONTINUOUS_UPDATES = -313
# Ours, never a third-party viewer's: our viewer bridge adds it to the local viewer's SetEncodings on its
# hop inside the session channel, once the agent has said it knows it (agent.viewer.input_filter): the
# viewer's requests stand, the agent sends each change as it comes, and the bridge keeps the local
# viewer's repeated requests to itself (agent.service.updater).
ENC_STANDING_REQUEST = -0x52454A01
# The agent's session message (agent.secure.mux, the session stream) saying it knows that pseudo-encoding:
# {"type": RFB_MESSAGE, "accepts": [STANDING_REQUEST_FEATURE]}. A bridge that never hears it (an older
# agent) passes every request on, as before.
RFB_MESSAGE = "rfb"
STANDING_REQUEST_FEATURE = "standing_request"

# Tight wire format (rfbproto §7.7.6): control byte values, filters, the compact-length bound
TIGHT_MIN_TO_COMPRESS = 12  # data shorter than this is sent uncompressed
TIGHT_MAX_COMPACT = (1 << 22) - 1
TIGHT_CTL_FILL = 0x80
TIGHT_CTL_JPEG = 0x90
TIGHT_CTL_EXPLICIT_FILTER = 0x40
TIGHT_FILTER_COPY = 0
TIGHT_FILTER_PALETTE = 1
TIGHT_FILTER_GRADIENT = 2

ENCODING_NAMES = {
    ENC_RAW: "Raw",
    ENC_COPYRECT: "CopyRect",
    ENC_RRE: "RRE",
    ENC_HEXTILE: "Hextile",
    ENC_TIGHT: "Tight",
    ENC_ZRLE: "ZRLE",
    ENC_DESKTOP_SIZE: "DesktopSize",
    ENC_LAST_RECT: "LastRect",
    ENC_CURSOR: "Cursor",
    ENC_EXTENDED_DESKTOP_SIZE: "ExtendedDesktopSize",
    ENC_FENCE: "Fence",
    ENC_CONTINUOUS_UPDATES: "ContinuousUpdates",
    ENC_STANDING_REQUEST: "StandingRequest",
}
