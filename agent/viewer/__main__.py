"""``python -m agent.viewer`` is ``rejnet-viewer``."""
import sys

from agent.cli import viewer_main

sys.exit(viewer_main())
