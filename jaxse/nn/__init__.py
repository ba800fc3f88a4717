"""The layer library (placeholder during the restructure)."""
