"""User pods as KubeSpawner builds them with lakehub's pieces.

KubeSpawner runs for real (``_mock=True`` only skips talking to a cluster: no kubelet
runs pods here); the manifest it returns is what it would send to the API server.
"""

from __future__ import annotations

import pytest
from traitlets.config import Config

from spawner_hooks.kube_volumes import cache_volume, cache_volume_mount


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch):
    """A kubeconfig pointing nowhere: KubeSpawner needs one to exist, nothing connects."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: unused}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: lakehub}}]
current-context: none
"""
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    # kubernetes_asyncio reads KUBECONFIG when first imported, which an earlier test may
    # have done: point its default location here as well
    import kubernetes_asyncio.config
    import kubernetes_asyncio.config.kube_config
    from kubespawner import KubeSpawner

    for module in (kubernetes_asyncio.config, kubernetes_asyncio.config.kube_config):
        monkeypatch.setattr(module, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))

    return KubeSpawner


async def test_user_pods_mount_the_cache_read_only(kubeconfig):
    KubeSpawner = kubeconfig  # noqa: N806
    c = Config()
    c.KubeSpawner.volumes = [cache_volume()]
    c.KubeSpawner.volume_mounts = [cache_volume_mount()]
    spawner = KubeSpawner(config=c, _mock=True)
    pod = await spawner.get_pod_manifest()
    from kubernetes_asyncio.client import ApiClient

    async with ApiClient() as api:
        manifest = api.sanitize_for_serialization(pod)  # what goes to the API server
    volume = next(v for v in manifest["spec"]["volumes"] if v["name"] == "lakehub-cache")
    assert volume["persistentVolumeClaim"] == {"claimName": "lakehub-cache", "readOnly": True}
    (container,) = manifest["spec"]["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "lakehub-cache")
    assert mount == {"name": "lakehub-cache", "mountPath": "/srv/lakehub/cache", "readOnly": True}
