"""``ember._library`` (torch._library): the private path some libraries import the custom-op
helpers from (torchao: ``from torch._library.infer_schema import infer_schema``); the functions
are ``ember.library``'s."""

from . import infer_schema

__all__ = ["infer_schema"]
