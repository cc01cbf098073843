"""The manifest: hubcache's record of one entry, as a typed, frozen value.

Written next to the tree as ``<key>.manifest.json`` (docs/cache-format.md) and read back by
every layer that needs the facts of an entry (completeness, the pin, Kaggle identity,
management). Code passes :class:`Manifest` around; only :meth:`Manifest.to_json` and
:meth:`Manifest.from_json` know the JSON spelling, so a field is renamed in one place.

Named tuples, not frozen dataclasses: every resolve imports this module (docs/architecture.md,
"Records on the import path").

``handle`` is the handle as shown to people: credentials in a URL are hidden
(``user:***@``), because manifests are read by ``ls``, ``info`` and backups.
"""

from __future__ import annotations

import json
import time
import types
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, Optional

from .._values import parse_json
from .._version import __version__

MANIFEST_VERSION = 1
_NO_EXTRA: Mapping[str, Any] = types.MappingProxyType({})  # shared, so read-only

ArchiveFormat = Literal["gzip", "bz2", "xz", "tar", "zip"]


class ArchiveFacts(NamedTuple):
    """What was downloaded when the model came as one archive (none for file sets)."""

    format: str  # an ArchiveFormat: "gzip", "bz2", "xz", "tar" (uncompressed) or "zip"
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "bytes": self.bytes, "sha256": self.sha256}


class Manifest(NamedTuple):
    handle: str
    key: str
    files: Mapping[str, tuple[int, str]]  # relative path -> (size, sha256 or "")
    dirs: tuple[str, ...]
    source: str = ""  # where the bytes came from (query values redacted)
    etag: str = ""
    last_modified: str = ""
    archive: Optional[ArchiveFacts] = None
    adopted: bool = False  # written for a tree hubcache did not make (tensorflow_hub's)
    created: str = ""
    tool: str = ""
    kaggle: Optional[Mapping[str, Any]] = None  # the Kaggle model's identity, if it is one
    extra: Mapping[str, Any] = _NO_EXTRA  # unknown keys, kept

    @classmethod
    def new(
        cls,
        *,
        handle: str,
        key: str,
        files: Mapping[str, Any],
        dirs: Any,
        source: str = "",
        etag: str = "",
        last_modified: str = "",
        archive: Optional[ArchiveFacts] = None,
        adopted: bool = False,
        kaggle: Optional[Mapping[str, Any]] = None,
    ) -> Manifest:
        """A manifest made now by this version of hubcache."""
        return cls(
            handle=handle,
            key=key,
            files={rel: (int(v[0]), str(v[1])) for rel, v in sorted(files.items())},
            dirs=tuple(sorted(dirs)),
            source=source,
            etag=etag,
            last_modified=last_modified,
            archive=archive,
            adopted=adopted,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            tool=f"hubcache {__version__}",
            kaggle=dict(kaggle) if kaggle is not None else None,
        )

    @property
    def archive_sha256(self) -> str:
        return self.archive.sha256 if self.archive is not None else ""

    def replace(self, **changes: Any) -> Manifest:
        return self._replace(**changes)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "hubcache_manifest": MANIFEST_VERSION,
            "handle": self.handle,
            "key": self.key,
            "source": self.source,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "archive": self.archive.to_dict() if self.archive is not None else {},
            "adopted": self.adopted,
            "created": self.created,
            "tool": self.tool,
            "dirs": list(self.dirs),
            "files": {rel: [size, digest] for rel, (size, digest) in self.files.items()},
        }
        if self.kaggle is not None:
            data["kaggle"] = dict(self.kaggle)
        data.update(self.extra)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Optional[Manifest]:
        """The manifest in ``data``, or None when it is not one we can trust."""
        files = data.get("files")
        if not isinstance(files, dict):
            return None
        try:
            parsed = {str(rel): (int(v[0]), str(v[1])) for rel, v in files.items()}
            archive = data.get("archive") or None
            facts = (
                ArchiveFacts(str(archive["format"]), int(archive["bytes"]), str(archive["sha256"]))
                if isinstance(archive, dict) and archive.get("sha256")
                else None
            )
            kaggle = data.get("kaggle")
            known = {*cls._fields, "hubcache_manifest"}
            return cls(
                handle=str(data.get("handle", "")),
                key=str(data.get("key", "")),
                files=parsed,
                dirs=tuple(str(d) for d in data.get("dirs", [""])),
                source=str(data.get("source", "")),
                etag=str(data.get("etag", "")),
                last_modified=str(data.get("last_modified", "")),
                archive=facts,
                adopted=bool(data.get("adopted", False)),
                created=str(data.get("created", "")),
                tool=str(data.get("tool", "")),
                kaggle=dict(kaggle) if isinstance(kaggle, dict) else None,
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (TypeError, ValueError, KeyError, IndexError):
            return None

    @classmethod
    def from_json(cls, text: bytes | str) -> Optional[Manifest]:
        try:
            data = parse_json(text)
        except ValueError:
            return None
        return cls.from_dict(data) if isinstance(data, dict) else None


def check_pin(manifest: Manifest, sha256: Optional[str], *, fresh: bool, where: str) -> None:
    """The one pin check: ``sha256`` (already normalised) against the archive a manifest
    records. ``fresh``: the manifest of what was just downloaded (nothing is cached yet);
    else a cached entry at ``where``. An entry with no archive on record (made by
    tensorflow_hub, or a Kaggle file set) cannot be checked: a fresh file set refuses the
    pin, a cached one is taken as it is."""
    from .._errors import ChecksumMismatchError, ConfigurationError

    if sha256 is None:
        return
    recorded = manifest.archive_sha256
    if not recorded:
        if fresh:
            raise ConfigurationError(
                f"{manifest.handle} came as a set of {len(manifest.files)} files, not an "
                "archive, so a sha256 pin cannot apply",
                hint="resolve it without --sha256",
            )
        return
    if recorded == sha256:
        return
    if fresh:
        raise ChecksumMismatchError(
            f"the archive of {manifest.handle} has sha256 {recorded}, not the pinned {sha256}; "
            "nothing was cached",
            expected=sha256,
            actual=recorded,
            hint="check the pin, or the server is serving other bytes than before",
        )
    raise ChecksumMismatchError(
        f"the cached archive of {manifest.handle} at {where} has sha256 {recorded}, not the "
        f"pinned {sha256}",
        expected=sha256,
        actual=recorded,
        path=where,
        hint="remove it with `hubcache rm` if the pin is right",
    )
