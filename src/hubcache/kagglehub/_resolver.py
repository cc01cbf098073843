"""hubcache as a kagglehub model resolver: ``is_supported(handle, path)`` and
``__call__(handle, path, *, force_download, output_dir) -> (path, version)``.

kagglehub asks each registered resolver, last registered first, whether it supports a
handle; the first that does resolves it. Ours answers for every model handle except where
kagglehub's Kaggle-notebook or Colab cache resolvers apply (they read mounted files: we never
compete with them). It keeps kagglehub's contract exactly and adds hubcache underneath:

* the version: a versioned handle as it is; an unversioned one is the latest, asked once
  per five minutes (``kaggle.versions.pin``), or offline (``HUBCACHE_OFFLINE=1``, or Kaggle
  unreachable) the newest version cached;
* the path returned is kagglehub's own (``Cache.get_path``: ``$KAGGLEHUB_CACHE/models/
  <owner>/<model>/<framework>/<variation>/<version>[/<path>]``, framework as given), and a
  hit is kagglehub's own (``Cache.load_from_cache``: the file's marker and the file);
* on a miss, hubcache's ``resolve`` fetches the whole version once (the entry's lock makes
  it one download for every process and machine sharing the cache; verified bytes, retries,
  mirrors, the shared tier), then ``kaggle.kagglehub_cache.publish`` links it into
  kagglehub's cache with the bundle marker and every file's marker. So KerasHub's
  ``model_download(handle, path)`` per file costs one download in all, and the next calls
  are kagglehub's own marker hits;
* a ``path`` that the version does not have is a ``ValueError`` "'<path>' is not present in
  the model files", answered from the cached version, with no request;
* ``output_dir=`` gets a copy (never links: the folder is the user's to change), with
  kagglehub's markers under ``<output_dir>/.complete/``, and kagglehub's ``FileExistsError``
  for a folder or file already there; ``force_download=True`` forgets the cached version
  (ours and kagglehub's) and fetches it again;
* errors keep hubcache's class and message, and are kagglehub's types as well: an HTTP
  answer from Kaggle is a ``KaggleApiHTTPError`` whose ``response.status_code`` is Kaggle's
  (KerasHub reads 403/404 as "no such file"), a network failure or an offline miss is a
  ``requests`` ``ConnectionError``.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from typing import Any, Optional

import requests
from kagglehub.exceptions import KaggleApiHTTPError

from .._config import load_config, select_root
from .._errors import (
    DownloadError,
    HTTPStatusError,
    HubcacheError,
    InvalidHandleError,
    ModelNotFoundError,
    OfflineError,
)
from .._resolve import parse, resolve
from ..kaggle import kagglehub_cache
from ..kaggle.credentials import kagglesdk_reading
from ..kaggle.identity import KaggleModel, parse_slug
from ..kaggle.versions import pin

# kagglehub's resolvers that read mounted files (Kaggle notebooks, Colab): ours steps aside
# wherever one of them says it supports a handle.
MOUNTED = ("ModelKaggleCacheResolver", "ModelColabCacheResolver")


# -- hubcache's errors, as the types code written against kagglehub catches ----------------
class KagglehubHTTPStatusError(HTTPStatusError, KaggleApiHTTPError):  # type: ignore[misc]
    """:class:`HTTPStatusError` raised through kagglehub: also its ``KaggleApiHTTPError``."""


class KagglehubModelNotFoundError(ModelNotFoundError, KaggleApiHTTPError):  # type: ignore[misc]
    """:class:`ModelNotFoundError` raised through kagglehub: a 404 ``KaggleApiHTTPError``."""


class KagglehubDownloadError(DownloadError, requests.ConnectionError):
    """:class:`DownloadError` (the network failed) raised through kagglehub."""


class KagglehubOfflineError(OfflineError, requests.ConnectionError):
    """:class:`OfflineError` raised through kagglehub (it would have failed to connect)."""


class PathNotInModelError(ModelNotFoundError, ValueError):
    """A ``path=`` the model version does not have: kagglehub's ``ValueError``."""


def as_kagglehub_error(exc: HubcacheError, url: str) -> HubcacheError:
    """``exc`` as the type kagglehub raises in the same situation (same message and facts)."""
    status = getattr(exc, "status", None)
    twin: Optional[type[HubcacheError]] = None
    if isinstance(exc, ModelNotFoundError) and not isinstance(exc, PathNotInModelError):
        twin, status = KagglehubModelNotFoundError, status or 404
    elif isinstance(exc, HTTPStatusError) and isinstance(status, int):
        twin = KagglehubHTTPStatusError
    elif isinstance(exc, OfflineError):
        twin = KagglehubOfflineError
    elif type(exc) is DownloadError and status is None:
        twin = KagglehubDownloadError
    if twin is None:
        return exc
    mapped = twin(exc.message, handle=exc.handle, **exc.facts)
    if isinstance(mapped, KaggleApiHTTPError):
        response = requests.Response()
        response.status_code = int(status or 0)
        response.url = url
        mapped.response = response
    return mapped


class HubcacheModelResolver:
    """Registered last in ``kagglehub.registry.model_resolver``, so it is asked first."""

    def __init__(self, registry: Any = None) -> None:
        self._registry = registry  # to see kagglehub's own resolvers

    def is_supported(self, handle: Any, path: Optional[str] = None, *_: Any, **__: Any) -> bool:
        if not all(hasattr(handle, a) for a in ("owner", "model", "framework", "variation")):
            return False
        if not _ours_to_answer(handle):
            return False
        return not any(impl.is_supported(handle, path) for impl in self._mounted())

    def __call__(
        self,
        handle: Any,
        path: Optional[str] = None,
        *,
        force_download: Optional[bool] = False,
        output_dir: Optional[str] = None,
    ) -> tuple[str, Optional[int]]:
        try:
            with kagglesdk_reading():  # code written against kagglehub reads as kagglehub
                result = model_download(
                    handle, path, force=bool(force_download), output_dir=output_dir
                )
        except HubcacheError as exc:
            mapped = as_kagglehub_error(exc, _page(handle))
            if mapped is exc:
                raise
            raise mapped.with_traceback(exc.__traceback__) from None
        _register_access(handle, result[1])
        return result

    def _mounted(self) -> list[Any]:
        impls = getattr(getattr(self._registry, "model_resolver", None), "_impls", None) or []
        return [i for i in impls if type(i).__name__ in MOUNTED]


def _ours_to_answer(handle: Any) -> bool:
    """What hubcache can put in kagglehub's cache: a handle it can read (a framework Kaggle
    adds after this release of hubcache stays kagglehub's) and a local cache root (a
    ``gs://`` or ``s3://`` root holds no files to link into kagglehub's folder)."""
    slug = "/".join(
        str(p) for p in (handle.owner, handle.model, handle.framework, handle.variation)
    )
    try:
        parse_slug(slug, slug)
    except InvalidHandleError:
        return False
    root, _rule = select_root(None, os.environ)
    return "://" not in root


def model_download(
    handle: Any, path: Optional[str], *, force: bool, output_dir: Optional[str]
) -> tuple[str, int]:
    """kagglehub's ``model_download`` contract, on top of hubcache's ``resolve``."""
    from kagglehub.cache import Cache
    from kagglehub.config import get_cache_folder

    slug = "/".join((handle.owner, handle.model, handle.framework, handle.variation))
    version = handle.version if handle.version is not None and handle.version > 0 else None
    wanted = parse(f"kaggle:{slug}" + (f"/{version}" if version else ""))
    pinned, model = pin(wanted, load_config())
    if model is None or model.version is None:  # pin always answers for a kaggle: handle
        raise ModelNotFoundError(f"{slug} is not a Kaggle model handle", handle=str(handle))
    number = model.version
    exact = handle.with_version(number)  # kagglehub's own handle type, for its Cache
    cache = Cache(override_dir=output_dir)
    rel = _relative(path, model) if path else None
    if not force:
        hit = cache.load_from_cache(exact, path)
        if hit:
            return str(hit), number
    root = get_cache_folder()
    if rel and not force and output_dir is None and cache.load_from_cache(exact, None):
        # the version is complete in kagglehub's cache (kagglehub alone may have fetched it
        # whole): the file's own marker is all that was missing, or the file is not there.
        found = str(cache.get_path(exact, path))
        if not os.path.exists(found):
            raise _not_present(path or "", model)
        kagglehub_cache.mark_file(root, model, rel)
        return found, number
    if force:
        _forget(pinned.raw, model, root if output_dir is None else None)
    tree = resolve(pinned.raw)  # one download, for every process sharing the cache
    if rel and not os.path.exists(os.path.join(tree, *rel.split("/"))):
        raise _not_present(path or "", model)
    if output_dir is not None:
        copied = _into_output_dir(
            cache, exact, tree, path=path, rel=rel, output_dir=output_dir, force=force
        )
        return copied, number
    kagglehub_cache.publish(tree, model, root, in_place_of_kagglehub=True)
    target = str(cache.get_path(exact, path))
    if rel and os.path.isfile(target):
        kagglehub_cache.mark_file(root, model, rel)  # published by an older hubcache: no markers
    return target, number


def _relative(path: str, model: KaggleModel) -> str:
    """``path`` inside the version, ``/``-separated; one outside it cannot be present."""
    clean = posixpath.normpath(path.replace("\\", "/"))
    if clean.startswith(("/", "../")) or clean in ("..", "."):
        raise _not_present(path, model)
    return clean


def _not_present(path: str, model: KaggleModel) -> PathNotInModelError:
    return PathNotInModelError(
        f"'{path}' is not present in the model files of {model.slug}; the version's files "
        "are listed by `hubcache info kaggle:" + model.slug + "`",
        handle=f"kaggle:{model.slug}",
    )


def _forget(raw: str, model: KaggleModel, kagglehub_root: Optional[str]) -> None:
    """``force_download``: hubcache's entry and kagglehub's copy go, so the version is
    fetched again (an entry another process is using right now is left to it)."""
    from .._cache import Cache
    from .._errors import EntryInUseError

    cache = Cache()
    try:
        plan = cache.plan_remove([raw])
        cache.execute(plan)
    except (EntryInUseError, ModelNotFoundError):
        pass
    if kagglehub_root is not None:
        kagglehub_cache.remove(kagglehub_root, model)


def _into_output_dir(
    cache: Any,
    exact: Any,
    tree: str,
    *,
    path: Optional[str],
    rel: Optional[str],
    output_dir: str,
    force: bool,
) -> str:
    """kagglehub's ``output_dir``: the files copied there, then its marker."""
    if path and rel:
        target = os.path.join(output_dir, path)
        if os.path.exists(target):
            if not force:
                raise FileExistsError(
                    f"{target} is already there (without kagglehub's completion marker); "
                    "remove it or pass force_download=True to replace it"
                )
            os.remove(target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(tree, *rel.split("/")), target)
    else:
        if os.path.isfile(output_dir):
            raise FileExistsError(f"output_dir {output_dir} is a file; name a folder")
        if os.path.isdir(output_dir) and os.listdir(output_dir):
            if not force:
                raise FileExistsError(
                    f"output_dir {output_dir} is not empty; empty it or pass "
                    "force_download=True to replace what is there"
                )
            for name in os.listdir(output_dir):
                full = os.path.join(output_dir, name)
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
                else:
                    os.remove(full)
        shutil.copytree(tree, output_dir, dirs_exist_ok=True)
    cache.mark_as_complete(exact, path)
    return str(cache.get_path(exact, path))


def _page(handle: Any) -> str:
    try:
        return str(handle.to_url())
    except Exception:  # a handle of an odd kind: the message names it anyway
        return ""


def _register_access(handle: Any, version: Optional[int]) -> None:
    """What kagglehub's own ``Resolver.__call__`` does after every resolve (it records the
    data sources a Kaggle notebook used)."""
    try:
        from kagglehub.tracker import register_datasource_access
    except ImportError:
        return
    register_datasource_access(handle, version)
