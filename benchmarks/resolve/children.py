"""Code run in child processes (passed with ``-c``; arguments arrive in ``sys.argv[1:]``).

Each prints one line starting with ``RESULT_PREFIX`` followed by JSON. A cold resolve runs
in a fresh interpreter, so every import and the first connection count, as for a user.
"""

RESULT_PREFIX = "BENCH_RESULT "

_CHILD_COMMON = r"""
import json, os, resource, sys, time
def _maxrss_kb():
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return v // 1024 if sys.platform == "darwin" else v
def _emit(**kw):
    sys.stdout.write("BENCH_RESULT " + json.dumps(kw) + "\n")
    sys.stdout.flush()
"""

_HUBCACHE_RESOLVE = r"""
import hubcache
_url, _cache_dir = sys.argv[1], sys.argv[2]
def _resolve():
    return hubcache.resolve(_url, cache_dir=_cache_dir)
_version = getattr(hubcache, "__version__", "?")
def _engine():
    from hubcache.archive import decode
    return decode.inflater()[0]
"""

_TFHUB_RESOLVE = r"""
import tensorflow_hub as hub
_url = sys.argv[1]
def _resolve():
    return hub.resolve(_url)
try:
    import tensorflow as _tf
    _version = "tensorflow_hub %s, tensorflow %s" % (hub.__version__, _tf.__version__)
except Exception:
    _version = "tensorflow_hub %s" % hub.__version__
def _engine():
    return "zlib (tarfile)"
"""

# VmHWM: this process image's own peak RSS. Linux starts a child's ru_maxrss at the peak
# RSS of the process that spawned it, so ru_maxrss alone can hide the client's real peak.
_COLD_BODY = r"""
_base = _maxrss_kb()
_t0 = time.perf_counter()
_path = _resolve()
_dt = time.perf_counter() - _t0
_hwm = None
try:
    with open("/proc/self/status") as _f:
        for _line in _f:
            if _line.startswith("VmHWM:"):
                _hwm = int(_line.split()[1])
except OSError:
    pass
_emit(seconds=_dt, path=str(_path), base_maxrss_kb=_base, maxrss_kb=_maxrss_kb(),
      vmhwm_kb=_hwm, version=_version, engine=_engine())
"""

# Warm: make sure the cache is filled, calibrate, then time reps+1 loops of n calls each.
_WARM_BODY = r"""
_calls, _reps, _budget = int(sys.argv[-3]), int(sys.argv[-2]), float(sys.argv[-1])
_path = _resolve()
_t0 = time.perf_counter()
for _ in range(10):
    _resolve()
_per = (time.perf_counter() - _t0) / 10
_n = max(10, min(_calls, int(_budget / max(_per, 1e-9))))
_samples = []
for _ in range(_reps + 1):
    _t0 = time.perf_counter()
    for _ in range(_n):
        _resolve()
    _samples.append((time.perf_counter() - _t0) / _n)
_emit(per_call=_samples, calls=_n, path=str(_path), maxrss_kb=_maxrss_kb(), version=_version)
"""

HUBCACHE_COLD = _CHILD_COMMON + _HUBCACHE_RESOLVE + _COLD_BODY
HUBCACHE_COLD_HWM = HUBCACHE_COLD  # the streamed mode's name for it
HUBCACHE_WARM = _CHILD_COMMON + _HUBCACHE_RESOLVE + _WARM_BODY
TFHUB_COLD = _CHILD_COMMON + _TFHUB_RESOLVE + _COLD_BODY
TFHUB_WARM = _CHILD_COMMON + _TFHUB_RESOLVE + _WARM_BODY


def blocking(modules: tuple[str, ...]) -> str:
    """A prefix that makes ``import <module>`` fail, as if its wheel were missing."""
    if not modules:
        return ""
    return "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
