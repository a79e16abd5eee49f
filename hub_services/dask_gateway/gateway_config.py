# The configuration file dask-gateway-server loads (`dask-gateway-server -f THIS`).
# All logic lives in hub_services/dask_gateway/config.py; the hub names the settings
# file in LAKEHUB_DASK_CONFIG when it starts the service.
from hub_services.dask_gateway.config import load_from_environment

load_from_environment(c)  # noqa: F821  (`c` is provided by dask-gateway-server)
