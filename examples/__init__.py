"""Runnable examples of chime-roster clients."""
