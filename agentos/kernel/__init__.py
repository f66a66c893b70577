"""Protected mode: the only package that mutates kernel state (through events)."""
