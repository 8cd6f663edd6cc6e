"""Evented models shared by every view (no Qt imports here)."""
from .colour import ColourBy
from .project_model import ProjectModel
from .selection import Selection

__all__ = ["ColourBy", "ProjectModel", "Selection"]
