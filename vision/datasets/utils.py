"""Downloads for the datasets: urllib, MD5 checks, atomic writes and extraction.

Every file lands under its final name only when complete and verified: downloads go to a
temporary file in the same folder and are renamed; archives are extracted into a temporary
folder beside the destination and their entries renamed into place.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence

__all__ = [
    "calculate_md5",
    "check_md5",
    "check_integrity",
    "download_url",
    "extract_archive",
    "download_and_extract_archive",
    "DownloadError",
    "verify_str_arg",
]


def verify_str_arg(
    value: str,
    arg: str | None = None,
    valid_values: Sequence[str] | None = None,
    custom_msg: str | None = None,
) -> str:
    """``value`` if it is a string among ``valid_values``; otherwise torchvision's ValueError
    naming the argument and the valid values."""
    if not isinstance(value, str):
        where = "" if arg is None else f" for argument {arg}"
        raise ValueError(f"Expected type str{where}, but got type {type(value)}.")
    if valid_values is None or value in valid_values:
        return value
    listed = ", ".join(f"'{v}'" for v in valid_values)
    raise ValueError(
        custom_msg or f"Unknown value '{value}' for argument {arg}. Valid values are {{{listed}}}."
    )


class DownloadError(RuntimeError):
    """A download failed or its checksum did not match."""


def calculate_md5(fpath: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    with open(fpath, "rb") as f:
        while chunk := f.read(chunk_size):
            md5.update(chunk)
    return md5.hexdigest()


def check_md5(fpath: str | os.PathLike, md5: str) -> bool:
    return md5 == calculate_md5(fpath)


def check_integrity(fpath: str | os.PathLike, md5: str | None = None) -> bool:
    if not os.path.isfile(fpath):
        return False
    return True if md5 is None else check_md5(fpath, md5)


def download_url(
    url: str,
    root: str | os.PathLike,
    filename: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
) -> str:
    """Download ``url`` to ``root/filename`` unless a verified copy is there; returns the path.

    The bytes go to a temporary file that is renamed into place only after the MD5 matches,
    so an interrupted or corrupt download never leaves a file under the final name.
    """
    root = os.path.expanduser(os.fspath(root))
    filename = filename or os.path.basename(url)
    fpath = os.path.join(root, filename)
    if check_integrity(fpath, md5):
        return fpath
    os.makedirs(root, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=root)
    try:
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "ember-vision"})
            with urllib.request.urlopen(req, timeout=timeout) as resp, os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(resp, f, 1 << 20)
        except (urllib.error.URLError, OSError) as exc:
            raise DownloadError(f"could not download {url} to {fpath}: {exc}") from exc
        if md5 is not None and not check_md5(tmp, md5):
            raise DownloadError(
                f"MD5 mismatch for {url}: expected {md5}, got "
                f"{calculate_md5(tmp)}; nothing written to {fpath}"
            )
        os.replace(tmp, fpath)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return fpath


def download_from_mirrors(mirrors: Sequence[str], filename: str, root: str, md5: str | None) -> str:
    """Try each mirror in turn; the error names every URL tried."""
    errors = []
    for mirror in mirrors:
        try:
            return download_url(f"{mirror}{filename}", root, filename, md5)
        except DownloadError as exc:
            errors.append(str(exc))
    raise DownloadError(f"Error downloading {filename}:\n" + "\n".join(errors))


_DECOMPRESSORS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _archive_kind(path: str) -> str:
    low = path.lower()
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar"):
        if low.endswith(suffix):
            return "tar"
    if low.endswith(".zip"):
        return "zip"
    for suffix in _DECOMPRESSORS:
        if low.endswith(suffix):
            return suffix
    raise RuntimeError(
        f"{path}: unknown archive type; supported: .tar(.gz/.bz2/.xz), .tgz, .zip, .gz, .bz2, .xz"
    )


def extract_archive(
    from_path: str | os.PathLike,
    to_path: str | os.PathLike | None = None,
    remove_finished: bool = False,
) -> str:
    """Extract ``from_path`` into ``to_path`` (default: its folder) atomically; returns
    ``to_path``. Tar members that would escape the folder are refused (tarfile's ``data``
    filter)."""
    from_path = os.fspath(from_path)
    to_path = os.fspath(to_path) if to_path is not None else os.path.dirname(from_path)
    os.makedirs(to_path, exist_ok=True)
    kind = _archive_kind(from_path)
    tmp = tempfile.mkdtemp(prefix=".extract-", dir=to_path)
    try:
        if kind == "tar":
            with tarfile.open(from_path) as tar:
                tar.extractall(tmp, filter="data")
        elif kind == "zip":
            with zipfile.ZipFile(from_path) as zf:
                for name in zf.namelist():
                    target = os.path.realpath(os.path.join(tmp, name))
                    if not target.startswith(os.path.realpath(tmp) + os.sep):
                        raise RuntimeError(f"{from_path}: member {name!r} escapes the folder")
                zf.extractall(tmp)
        else:
            name = os.path.basename(from_path)[: -len(kind)]
            with (
                _DECOMPRESSORS[kind](from_path, "rb") as src,
                open(os.path.join(tmp, name), "wb") as dst,
            ):
                shutil.copyfileobj(src, dst, 1 << 20)
        for entry in os.listdir(tmp):
            dest = os.path.join(to_path, entry)
            if os.path.isdir(dest) and not os.path.islink(dest):
                shutil.rmtree(dest)
            os.replace(os.path.join(tmp, entry), dest)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise RuntimeError(f"could not extract {from_path}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if remove_finished:
        os.remove(from_path)
    return to_path


def download_and_extract_archive(
    url: str,
    download_root: str,
    extract_root: str | None = None,
    filename: str | None = None,
    md5: str | None = None,
    remove_finished: bool = False,
) -> None:
    path = download_url(url, download_root, filename, md5)
    extract_archive(path, extract_root or download_root, remove_finished)
