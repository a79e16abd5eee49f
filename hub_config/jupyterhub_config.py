# The JupyterHub configuration of the embedded local stack (`make up`).
# All logic lives in hub_config/local.py; the site file and the state folder come from
# the LAKEHUB_SITE and LAKEHUB_STATE environment variables set by localstack.stack.
from hub_config.local import load_from_environment

load_from_environment(c)  # noqa: F821  (`c` is provided by JupyterHub)
