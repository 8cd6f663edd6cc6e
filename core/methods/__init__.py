"""Learning methods, one module each: the loss as a pure function at the top, the method below."""
from .base import Method, ParamSpec
from .registry import FINETUNERS, METHODS, get_finetuner, get_method

__all__ = ["Method", "ParamSpec", "METHODS", "FINETUNERS", "get_method", "get_finetuner"]
