"""``python -m agent.launcher`` is ``rejnet-help`` (see ``cli.main``)."""
from agent.launcher.cli import main

raise SystemExit(main())
