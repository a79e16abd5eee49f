"""lakehub inside a session: what a student's server and notebooks use.

``fetch("scope:dataset")`` returns local paths of the files in the class's shared,
read-only cache (see :mod:`lakehub.cache`).  The package is installed in the analysis
environment (the single-user image); its Jupyter server extension
(:mod:`lakehub.jupyter_ext`) is switched on by the configuration the spawn hooks write.
Importing the package is cheap: the cache client loads on first use.
"""

__all__ = ["CacheError", "CacheUnavailable", "fetch"]


def __getattr__(name: str):
    if name in __all__:
        from lakehub import cache

        return getattr(cache, name)
    raise AttributeError(f"module 'lakehub' has no attribute {name!r}")


def _jupyter_server_extension_points():
    return [{"module": "lakehub.jupyter_ext"}]
