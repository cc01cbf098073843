"""Which Kaggle model a handle names: owner, model, framework, variation and version.

Handle forms (all name the same model version)::

    kaggle:google/nnlm/tensorFlow2/en-dim128/2                                   scheme form
    https://www.kaggle.com/models/google/nnlm/tensorFlow2/en-dim128/2            short URL
    https://www.kaggle.com/models/google/nnlm/frameworks/tensorFlow2/variations/en-dim128/versions/2

Without the version (``.../en-dim128``) they mean the latest version. Kaggle matches the
framework name without regard to case or underscores (``tensorflow2`` = ``tensorFlow2``), so
we compare frameworks by that normal form; the spelling the user wrote is kept for paths
(kagglehub's cache folder uses it). Pure functions: no I/O.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any, Optional

from .._errors import InvalidHandleError
from .._handles import Handle

SCHEME = "kaggle:"
# Kaggle's framework enum (kagglesdk ModelFramework), by normal form -> wire name suffix.
_FRAMEWORKS = (
    *("TENSOR_FLOW_1", "TENSOR_FLOW_2", "TF_LITE", "TF_JS", "PY_TORCH", "JAX", "FLAX", "PAX"),
    *("MAX_TEXT", "GEMMA_CPP", "GGML", "GGUF", "CORAL", "SCIKIT_LEARN", "MXNET", "ONNX"),
    *("KERAS", "TRANSFORMERS", "API", "OTHER", "TENSOR_RT_LLM", "TRITON", "VLLM"),
)
FRAMEWORKS = {name.replace("_", "").lower(): name for name in _FRAMEWORKS}
TENSORFLOW = ("tensorflow1", "tensorflow2")  # SavedModels: saved_model.pb must be there
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
KAGGLE_HOSTS = ("www.kaggle.com", "kaggle.com")


def framework_id(name: str) -> str:
    """The normal form Kaggle compares frameworks by: lower case, no ``_`` or ``-``."""
    return re.sub(r"[_-]", "", name.lower())


@dataclasses.dataclass(frozen=True)
class KaggleModel:
    owner: str
    model: str
    framework: str  # as written by the user or by Kaggle's own URL
    variation: str
    version: Optional[int] = None

    @property
    def framework_enum(self) -> str:
        return "MODEL_FRAMEWORK_" + FRAMEWORKS[framework_id(self.framework)]

    @property
    def is_tensorflow(self) -> bool:
        return framework_id(self.framework) in TENSORFLOW

    @property
    def slug(self) -> str:
        parts = [self.owner, self.model, self.framework, self.variation]
        if self.version is not None:
            parts.append(str(self.version))
        return "/".join(parts)

    def same_variation(self, other: KaggleModel) -> bool:
        """Same model variation, whatever the spelling (slugs and frameworks fold case)."""
        return (
            self.owner.lower() == other.owner.lower()
            and self.model.lower() == other.model.lower()
            and framework_id(self.framework) == framework_id(other.framework)
            and self.variation.lower() == other.variation.lower()
        )

    def same(self, other: KaggleModel) -> bool:
        return self.same_variation(other) and self.version == other.version

    def with_version(self, version: int) -> KaggleModel:
        return dataclasses.replace(self, version=version)

    def page(self, web: str = "https://www.kaggle.com") -> str:
        """The model's page, where gated models show their terms."""
        return f"{web}/models/{self.owner}/{self.model}"

    def record(self) -> dict[str, Any]:
        """What a manifest keeps under ``"kaggle"``: the identity, for sharing downloads."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, data: Any) -> Optional[KaggleModel]:
        try:
            model = cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
        except (KeyError, TypeError):
            return None
        ok = framework_id(str(model.framework)) in FRAMEWORKS and isinstance(model.version, int)
        return model if ok else None


def parse_slug(text: str, handle: str) -> KaggleModel:
    """``O/M/FW/VAR[/VER]`` (kagglehub's handle) -> KaggleModel, or InvalidHandleError."""
    parts = text.strip("/").split("/") if text.strip("/") else []
    example = "kaggle:google/nnlm/tensorFlow2/en-dim128/2"
    if len(parts) not in (4, 5) or not all(_SLUG.match(p) for p in parts[:4]):
        raise InvalidHandleError(
            f"{handle!r} is not a Kaggle model handle OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]"
            f" (e.g. {example})",
            handle=handle,
        )
    if framework_id(parts[2]) not in FRAMEWORKS:
        raise InvalidHandleError(
            f"{handle!r} names the framework {parts[2]!r}, which Kaggle does not know; use "
            "the one on the model's Kaggle page, e.g. tensorFlow2, tensorFlow1, tfLite, "
            "pyTorch, jax, keras, transformers, gguf (any case)",
            handle=handle,
        )
    version: Optional[int] = None
    if len(parts) == 5:
        if not parts[4].isdigit() or int(parts[4]) < 1:
            raise InvalidHandleError(
                f"{handle!r} has the version {parts[4]!r}; a version is a number from 1, or "
                "leave it out for the latest",
                handle=handle,
            )
        version = int(parts[4])
    return KaggleModel(parts[0], parts[1], parts[2], parts[3], version)


def from_url(
    url: str, hosts: Iterable[str] = KAGGLE_HOSTS, *, strict: bool = False
) -> Optional[KaggleModel]:
    """The model a Kaggle model URL names (short or long form), or None for other URLs.

    ``strict`` (a handle the user typed): a URL under a Kaggle host's ``/models/`` that does
    not name one model version is an InvalidHandleError naming the expected form, rather
    than None, which would send it to the web page as if it were a TF Hub host."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").lower()
        netloc = host + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return None
    if host not in hosts and netloc not in hosts:
        return None
    segments = [urllib.parse.unquote(s) for s in parts.path.strip("/").split("/")]
    if segments[0] != "models":
        return None
    rest = segments[1:]
    if len(rest) >= 3 and rest[2] == "frameworks":  # the long form
        if len(rest) == 6 and rest[4] == "variations":
            rest = [rest[0], rest[1], rest[3], rest[5]]
        elif len(rest) == 8 and rest[4] == "variations" and rest[6] == "versions":
            rest = [rest[0], rest[1], rest[3], rest[5], rest[7]]
        else:
            rest = []  # a framework's or a variation's page, not one model
    if strict and len(rest) not in (4, 5):
        raise InvalidHandleError(
            f"{url!r} is not a Kaggle model URL: expected https://www.kaggle.com/models/"
            "OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION], as the model's page shows it "
            "(e.g. https://www.kaggle.com/models/google/nnlm/tensorFlow2/en-dim128/2)",
            handle=url,
        )
    try:
        return parse_slug("/".join(rest), url)
    except InvalidHandleError:
        if strict:
            raise
        return None


def web_hosts(web_endpoint: str) -> tuple[str, ...]:
    """Hosts whose ``/models/...`` URLs are Kaggle model pages: kaggle.com, plus the host
    of the selected ``KAGGLE_API_ENVIRONMENT`` (a test server, staging)."""
    parts = urllib.parse.urlsplit(web_endpoint)
    extra = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return (*KAGGLE_HOSTS, extra) if extra not in KAGGLE_HOSTS else KAGGLE_HOSTS


def kaggle_handle(handle: Handle, web_endpoint: str) -> Optional[tuple[Handle, KaggleModel]]:
    """Re-classify a parsed handle as a Kaggle model when it names one, else None."""
    if handle.kind == "kaggle":
        return handle, parse_slug(handle.location, handle.raw)
    if handle.kind != "model":
        return None
    model = from_url(handle.raw, web_hosts(web_endpoint), strict=True)
    if model is None:
        return None
    return Handle(handle.raw, "kaggle", handle.scheme, model.slug), model


def versioned(handle: Handle, model: KaggleModel, version: int) -> Handle:
    """The handle of one version, spelled like ``handle`` (so its key is what
    tensorflow_hub would use for the versioned URL)."""
    pinned = model.with_version(version)
    if handle.raw.startswith(SCHEME):
        return Handle(handle.raw.rstrip("/") + f"/{version}", "kaggle", "kaggle", pinned.slug)
    parts = urllib.parse.urlsplit(handle.raw)
    long_form = "/frameworks/" in parts.path
    path = parts.path.rstrip("/") + (f"/versions/{version}" if long_form else f"/{version}")
    raw = urllib.parse.urlunsplit(parts._replace(path=path))
    return Handle(raw, "kaggle", handle.scheme, pinned.slug)
