"""The technician's side: authenticate to a customer's agent and show its screen.

``ViewerBridge`` serves the session as plain RFB on loopback so any VNC viewer
(or a product's own window, via ``agent.viewer.rfb_client``) can display it.
"""
from agent.viewer.bridge import BridgeConfig, ViewerBridge

__all__ = ["BridgeConfig", "ViewerBridge"]
