"""lakehub inside a session: what a student's server and notebooks use.

``fetch("scope:dataset")`` returns local paths of the files in the class's shared,
read-only cache (see :mod:`lakehub.cache`).  The package is installed in the analysis
environment (the single-user image); its Jupyter server extension
(:mod:`lakehub.jupyter_ext`) is switched on by the configuration the spawn hooks write.
"""

from lakehub.cache import CacheError, fetch

__all__ = ["CacheError", "fetch"]


def _jupyter_server_extension_points():
    return [{"module": "lakehub.jupyter_ext"}]
