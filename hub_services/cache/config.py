"""The cache service's start-up configuration, built from the site model (pure).

One builder for both deployments: the local stack writes it to a 0600 file
(hub_config.local), the chart puts it in a ConfigMap (hub_config.values).  Only the
*path* of the Rucio admin password appears, never the password.
"""

from __future__ import annotations

from sitefile import Site


def service_config(
    site: Site,
    *,
    port: int,
    root: str,
    index: str,
    admin_username: str,
    password_file: str,
    address: str = "127.0.0.1",
) -> dict:
    default = site.rucio.default
    rate = site.cache.transfer_rate_limit_mbps
    return {
        "port": port,
        "address": address,
        "root": root,
        "index": index,
        "quota_bytes": site.cache.quota_bytes,
        "pinned": list(site.cache.pinned),
        "rate_bps": rate * 1e6 / 8 if rate else None,  # Mbit/s -> bytes/s
        "max_parallel": site.cache.max_parallel_transfers,
        "rule_poll_seconds": site.cache.rule_poll_seconds,
        "rucio": {
            "rucio_host": default.rucio_host,
            "auth_host": default.auth_url,
            "vo": default.vo,
            "account": default.admin_account,
            "username": admin_username,
            "password_file": password_file,
            "cache_rse": site.cache.rse,
            "ca_cert": str(default.ca_cert) if default.ca_cert else None,
        },
    }
