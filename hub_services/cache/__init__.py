"""The shared dataset cache: one hub-side service that is the only writer of the cache.

Modules: ``layout`` (pure: DIDs -> paths, validation), ``transfer`` (the child process
that copies one file and checksums it on the way), ``store`` (single-flight downloads,
publication by atomic rename, eviction), ``rucio`` (the Rucio side), ``app`` (the HTTP
API sessions call with their JupyterHub token), ``warm`` (fill the cache before class).
"""
