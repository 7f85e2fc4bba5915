"""``ember.nn``: modules, parameters, functional, init (PyTorch's names)."""

from . import functional, init, parallel, utils
from .module import Module
from .modules import *  # noqa: F403
from .parameter import Buffer, Parameter, UninitializedParameter
