"""Cython kernels. Private: use the Python wrappers in agent.changes.detector and agent.encode."""
