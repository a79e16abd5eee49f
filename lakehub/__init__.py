"""lakehub inside a session: what a student's server and notebooks use.

The package is installed in the analysis environment (the single-user image).  Its
Jupyter server extension (:mod:`lakehub.jupyter_ext`) is switched on by the
configuration the spawn hooks write.
"""


def _jupyter_server_extension_points():
    return [{"module": "lakehub.jupyter_ext"}]
