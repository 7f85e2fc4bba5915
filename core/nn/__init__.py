"""``ember.nn``: modules, parameters, functional, init (PyTorch's names)."""

from . import functional, init, parallel, utils
from .modules import *  # noqa: F403
from .parameter import Buffer, Parameter, UninitializedParameter
from .module import Module
