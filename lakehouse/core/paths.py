"""File names as the tables store them: a UTF-8 name as it is, any other name losslessly.

A POSIX file name is bytes; Python gives an undecodable byte back as a lone surrogate
(``os.fsdecode``), which opens the file fine but which no Arrow string column can hold. Such a
path is stored as a ``file://`` URI with every byte outside the URI's plain characters
percent-encoded (``%`` itself included), so the stored text gives back exactly the bytes of the
name; :func:`local_path` turns it back into the path to open.
"""

from __future__ import annotations

import os
from urllib.parse import quote, unquote_to_bytes

FILE_SCHEME = "file://"


def is_utf8(name: str) -> bool:
    """Whether ``name`` (as ``os.fsdecode`` gives it) is valid UTF-8 text."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable_path(path: str) -> str:
    """``path`` as a table stores it: itself when it is UTF-8, else a lossless ``file://`` URI."""
    if is_utf8(path):
        return path
    return FILE_SCHEME + quote(os.fsencode(os.path.abspath(path)), safe="/")


def storable_name(name: str) -> str:
    """A relative name (a ``relpath``) as a table stores it: itself when it is UTF-8, else its
    bytes percent-encoded (for display and matching; the ``uri`` is the lossless form)."""
    return name if is_utf8(name) else quote(os.fsencode(name), safe="/")


def local_path(uri: str) -> str:
    """The path to open for a stored ``uri``: a ``file://`` URI decoded back to the exact bytes
    of the name (as ``os.fsdecode`` gives them), any other local path unchanged."""
    if uri.startswith(FILE_SCHEME):
        return os.fsdecode(unquote_to_bytes(uri[len(FILE_SCHEME) :]))
    return uri
