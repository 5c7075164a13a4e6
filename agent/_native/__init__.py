"""Cython kernels. Private: use the Python wrappers in agent.detect and agent.encode."""
