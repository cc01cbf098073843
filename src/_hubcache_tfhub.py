"""hubcache's start-up hook for tensorflow_hub, imported by ``hubcache-tfhub.pth``.

``hubcache tfhub enable`` writes that one-line ``.pth`` into site-packages; ``site`` runs it
at every interpreter start. The finder that waits for ``import tensorflow_hub`` is the one
both plug-ins share (``_hubcache_hook``, see its docstring); this module only arms it, and
stays the name the ``.pth`` imports so that files written by earlier releases keep working.
"""

import _hubcache_hook

_hubcache_hook.arm("tensorflow_hub")
