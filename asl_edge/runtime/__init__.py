"""Deployment runtime: one interface over every artifact format (see :mod:`.backend`)."""

from .backend import ArtifactError, Backend, load, read_metadata

__all__ = ["ArtifactError", "Backend", "load", "read_metadata"]
