"""``python -m agent`` is ``rejnet-agent``."""
import sys

from agent.commands import agent_main

sys.exit(agent_main())
