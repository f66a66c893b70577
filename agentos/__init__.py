"""AgentOS: a userspace operating system for AI agents.

Agents import ``agentos.sdk``; people use the ``agentos`` command. Everything else is the
kernel's business.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
