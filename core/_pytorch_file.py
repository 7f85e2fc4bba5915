"""``torch.PyTorchFileReader``: record access to a ``torch.save`` zip archive.

PyTorch's class (``torch._C.PyTorchFileReader``) is the C++ reader behind ``torch.load``;
libraries open checkpoints with it to unpickle lazily (Lightning's ``_lazy_load`` reads
``get_record("data.pkl")`` and the ``data/<key>`` storages). ember reads the same archives
(``core/_torch_format.py``); this class gives the record-level view over Python's ``zipfile``.
"""

from __future__ import annotations

import os
import zipfile
from typing import IO

__all__ = ["PyTorchFileReader"]


class PyTorchFileReader:
    r"""Read the records of a PyTorch zip checkpoint by their names inside the archive.

    Args:
        file: a path or a binary file object holding a ``torch.save`` archive (zip format).

    Record names omit the archive's top folder, as PyTorch's: ``"data.pkl"``, ``"data/0"``,
    ``"version"``, ``"byteorder"``.
    """

    def __init__(self, file: str | os.PathLike | IO[bytes]) -> None:
        try:
            self._zip = zipfile.ZipFile(
                os.fspath(file) if isinstance(file, (str, os.PathLike)) else file
            )
        except (zipfile.BadZipFile, EOFError) as exc:
            raise RuntimeError(
                f"PyTorchFileReader failed reading zip archive: not a torch.save archive ({exc})"
            ) from None
        names = self._zip.namelist()
        if not names or "/" not in names[0]:
            raise RuntimeError(
                "PyTorchFileReader: the archive has no top folder (not a torch.save file)"
            )
        self._prefix = names[0].split("/", 1)[0] + "/"
        self._records = {n[len(self._prefix) :]: n for n in names if n.startswith(self._prefix)}

    def _name(self, name: str) -> str:
        if name not in self._records:
            raise RuntimeError(f"PyTorchFileReader: no record named {name!r} in the archive")
        return self._records[name]

    def get_record(self, name: str) -> bytes:
        r"""The bytes of record ``name`` (``"data.pkl"``, ``"data/0"``, ...)."""
        return self._zip.read(self._name(name))

    def has_record(self, name: str) -> bool:
        return name in self._records

    def get_all_records(self) -> list[str]:
        return list(self._records)

    def get_record_offset(self, name: str) -> int:
        r"""The byte offset of record ``name``'s data in the file (records are stored, not
        compressed, so this is where its bytes start)."""
        info = self._zip.getinfo(self._name(name))
        fh = self._zip.fp
        fh.seek(info.header_offset)
        header = fh.read(30)
        name_len = int.from_bytes(header[26:28], "little")
        extra_len = int.from_bytes(header[28:30], "little")
        return info.header_offset + 30 + name_len + extra_len

    def serialization_id(self) -> str:
        return (
            self._zip.read(self._records[".data/serialization_id"]).decode()
            if (".data/serialization_id" in self._records)
            else ""
        )

    def get_record_size(self, name: str) -> int:
        r"""The size in bytes of record ``name``."""
        return self._zip.getinfo(self._name(name)).file_size
