"""``ember._library.infer_schema`` (torch._library.infer_schema): ``ember.library.infer_schema``
under torch's private module path."""

from ember.library._schema import infer_schema

__all__ = ["infer_schema"]
