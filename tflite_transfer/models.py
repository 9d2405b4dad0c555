"""Stub: filled in by its area's work."""
class Sequential:  # stub
    pass
