"""Helpers for testing AgentOS and agents written for it: real kernels in real processes."""
