"""Capabilities: resource patterns and rights (pattern.py) and the policy file (policy.py)."""
