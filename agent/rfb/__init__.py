"""RFB 3.8 (RFC 6143), sans-IO: server and client state machines, update tracking."""
