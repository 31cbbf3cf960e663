"""podpath: where and why a packet dies between two pods."""

__version__ = "0.1.0"
