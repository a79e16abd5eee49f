"""Dask Gateway beside the hub (docs/scale-out.md).

``config`` builds the gateway's settings from the site model and fills its traitlets
configuration; ``backend`` adapts dask-gateway-server's local-process backend to
lakehub's per-user system accounts; ``gateway_config.py`` is the file the server loads.
"""
