"""The three KubeSpawner hooks of a lakehub session (pre-spawn, modify-pod, post-stop),
tying a bundle builder to the Secret delivery (:mod:`spawner_hooks.kube_delivery`)."""

from __future__ import annotations

import logging

from spawner_hooks.exchange_hooks import TokenExchangeHooks
from spawner_hooks.hooks import DeliveryFailed, LakehubHooks
from spawner_hooks.kube_delivery import KubeSecretDelivery

log = logging.getLogger("JupyterHub").getChild("lakehub")


class KubeSession:
    """Ties a bundle builder (LakehubHooks or TokenExchangeHooks) to the Secret delivery
    and gives KubeSpawner its three hooks as plain functions (traitlets deep-copies
    config values; a function is copied by reference, a bound method is not)."""

    def __init__(
        self,
        hooks: LakehubHooks | TokenExchangeHooks,
        delivery: KubeSecretDelivery,
        also_on_stop: tuple = (),
        before_spawn: tuple = (),
    ):
        if hooks.delivery is not delivery:
            raise ValueError("the hooks must deliver through this KubeSecretDelivery")
        self.hooks = hooks
        self.delivery = delivery
        # the token and the Secrets are made while KubeSpawner makes the claim and the
        # pod's manifest; modify_pod waits for them
        delivery.overlap = True
        # more post-stop steps, e.g. spawner_hooks.dask.ClusterStopper.post_stop
        self.also_on_stop = also_on_stop
        # steps before the session's own: the profile check, the course folders
        self.before_spawn = before_spawn

    async def pre_spawn(self, spawner) -> None:
        for step in self.before_spawn:
            await step(spawner)
        await self.hooks.pre_spawn(spawner)

    async def modify_pod(self, spawner, pod):
        """KubeSpawner calls this just before it creates the pod, after the PVC: the
        token and the Secrets were being made meanwhile, so wait for them here (the pod
        refers to them).  A failure is logged as a failed delivery always was (the server starts
        without Rucio access, and the hub log says why)."""
        try:
            await self.delivery.delivered(spawner)
        except DeliveryFailed as exc:
            log.error("lakehub: %s", exc)
        return self.delivery.modify_pod(spawner, pod)

    async def post_stop(self, spawner) -> None:
        try:
            await self.delivery.remove(spawner)
        except DeliveryFailed as exc:
            log.error("lakehub: %s", exc)
        for step in self.also_on_stop:
            await step(spawner)

    def hook_functions(self) -> dict:
        async def lakehub_pre_spawn_hook(spawner) -> None:
            await self.pre_spawn(spawner)

        async def lakehub_modify_pod_hook(spawner, pod):
            return await self.modify_pod(spawner, pod)

        async def lakehub_post_stop_hook(spawner) -> None:
            await self.post_stop(spawner)

        return {
            "pre_spawn_hook": lakehub_pre_spawn_hook,
            "modify_pod_hook": lakehub_modify_pod_hook,
            "post_stop_hook": lakehub_post_stop_hook,
        }

    def install(self, spawner_config) -> None:
        """Set the hooks on a traitlets config section, e.g. ``c.KubeSpawner``."""
        for trait, fn in self.hook_functions().items():
            setattr(spawner_config, trait, fn)
