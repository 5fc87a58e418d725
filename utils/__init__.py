"""Shared utilities: the class hierarchy, safe file writes and user-facing errors."""
