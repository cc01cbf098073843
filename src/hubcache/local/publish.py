"""Publish: make a finished staging folder the entry, in one atomic rename.

Order (each step safe to crash after):

0. the root's CACHEDIR.TAG, when it has none (its first entry), synced with the root's name;
1. the descriptor ``<key>.descriptor.txt`` (tensorflow_hub writes it before its rename too;
   it has no meaning for completeness, so overwriting it is harmless);
2. ``rename(<key>.<uid>.tmp, <key>)``: the tree appears whole or not at all. If ``<key>``
   already exists another process won (possible when locks do not work, e.g. on some
   network filesystems): we lose cleanly and use the winner's tree. The staging name is
   fresh (ours alone) and the rename never replaces a tree on any platform (POSIX refuses a
   non-empty target, Windows any target), so no reader ever sees a mix;
3. ``<key>.manifest.json``, written atomically, only by the winner: hubcache's proof of
   completeness. A crash between 2 and 3 leaves a whole tree without a manifest, which the
   next resolve adopts as a legacy entry; then one sync of the root makes both names
   durable.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import logging
import os
import shutil
import socket

from .. import _faults, _platform
from .entry import Entry, scan_tree
from .manifest import Manifest
from .root import fsync_dir, tag_root, write_atomic

log = logging.getLogger(__name__)


def descriptor_text(handle: str) -> str:
    """tensorflow_hub's descriptor, byte for byte in its format."""
    return (
        f"Module: {handle}\n"
        f"Download Time: {datetime.datetime.today()}\n"
        f"Downloader Hostname: {socket.gethostname()} (PID:{os.getpid()})"
    )


def publish(entry: Entry, staging: str, manifest: Manifest, *, fsync: bool) -> bool:
    """Move ``staging`` into place; True if ours is the published tree."""
    tag_root(entry.root, fsync=fsync)
    write_atomic(entry.descriptor_path, descriptor_text(manifest.handle), fsync=fsync)
    _faults.checkpoint("before-rename")
    try:
        # Windows: a rename never replaces (EEXIST: we lost), and fails for a moment while
        # a scanner holds a fresh file of the staging open (retried).
        _platform.retry_busy(_faults.fs.rename, staging, entry.path)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
            return False
        if isinstance(exc, PermissionError) and _platform.WINDOWS and os.path.isdir(entry.path):
            return False  # the winner's tree is there (and in use)
        raise
    _faults.checkpoint("after-rename")
    entry.forget()
    try:
        # One folder sync makes the rename and the manifest's name durable together. No
        # sync between them: a crash that kept the manifest but lost the rename leaves a
        # manifest without its tree, which the next resolve finds damaged ("the model
        # folder is missing"), moves aside and downloads again (the staging copy is debris
        # for gc). The manifest's own bytes are synced before its rename (write_atomic).
        write_atomic(entry.manifest_path, manifest.to_json(), fsync=fsync)
        if fsync:
            fsync_dir(entry.root)
    except OSError as exc:
        # The tree is already whole and synced; without its manifest the next resolve
        # adopts it as a legacy entry, so failing this call would only hide a good model.
        log.warning("could not record the manifest of %s: %s", entry.path, exc)
    _faults.checkpoint("after-manifest")
    return True


def adopt(entry: Entry, handle: str) -> None:
    """Write a manifest for a legacy tree so later hits take the fast path. Best effort:
    a read-only cache keeps working without it. ``handle`` as shown (credentials hidden)."""
    files, dirs = scan_tree(entry.path)
    manifest = Manifest.new(handle=handle, key=entry.key, files=files, dirs=dirs, adopted=True)
    with contextlib.suppress(OSError):
        write_atomic(entry.manifest_path, manifest.to_json())


def discard(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
