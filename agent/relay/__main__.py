"""``python -m agent.relay`` is ``rejnet-relay``."""
import sys

from agent.cli import relay_main

sys.exit(relay_main())
