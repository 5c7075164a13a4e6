"""Low-bandwidth link benchmark: our chain vs x11vnc vs TigerVNC through a shaping proxy.

``python -m benchmarks.linkbench --out DIR [--quick]``; see README.md here.
Modules: proxy (the emulated link), netem (the kernel cross-check), servers
(the servers under test), workloads (scripted X programs and synthetic
screens), measure (the viewer, ground truth and one run), report (tables
and plots).
"""
