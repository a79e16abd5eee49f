"""The usage collector on Kubernetes: each user pod's CPU time and memory, read from the
kubelet of its node, appended to the same sessions record as the local collector
(:mod:`spawner_hooks.usage`, :mod:`courses.usage`) for the usage report.

Where the figures come from: the kubelet's Summary API (``GET https://<node>:<port>/
stats/summary``), the cgroup figures the kubelet itself keeps for every pod.  Not
metrics-server: it serves a rate (cores now), while the report wants the CPU time a
session used, which the Summary API gives as a cumulative counter.

* CPU time (``cpu_s``): the pod's ``cpu.usageCoreNanoSeconds``, cumulative over the
  pod's life (every container, the postStart pull and any kernel it ran), never
  decreasing within a session (the sum over its containers while the kubelet still
  reports the pod's own figure as 0, in its first seconds);
* peak memory (``peak_rss``): the largest ``memory.workingSetBytes`` of the pod seen at
  a round (the working set is what the kubelet itself counts against the pod's memory
  limit; it is not the resident set of the local collector, but the closest figure a
  pod has);
* the start: the pod's ``status.startTime`` (from KubeSpawner's reflector; the
  summary's own start of the pod if that has none); the stop: when the hub stops the
  server, or the round that finds the pod gone.

How: the collector runs in the hub's event loop.  It finds each watched server's pod in
KubeSpawner's own pod reflector (no API call), groups the pods by node and asks each
node's kubelet once per round (every 10 s, every 2 s while a server starts), all nodes
at once.  The node's address and kubelet port come from the Node object (``get`` on
``nodes``), cached; the calls carry the hub's service-account token and check the
kubelet's serving certificate against the cluster CA of the service-account mount.  The
hub's rights: a ClusterRole with ``get`` on ``nodes/stats`` and ``get``/``list`` on
``nodes`` (rendered by ``hub_config.values``, created by the chart); never ``nodes/proxy``,
whose GET can be turned into an exec on the kubelet.

A failing call (kubelet unreachable, certificate not verifiable, RBAC missing) logs one
line per node and reason (no token, no traceback) and another when it works again; the
spawn is never affected and the report's columns for those pods stay empty.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from spawner_hooks.usage import Collector, Watch

log = logging.getLogger("lakehub.usage")

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SUMMARY = "/stats/summary?only_cpu_and_memory=true"
# which of a node's addresses to call its kubelet on, best first
ADDRESS_TYPES = ("InternalIP", "InternalDNS", "Hostname", "ExternalIP", "ExternalDNS")


# --------------------------------------------------------------------------- pure parts


@dataclass(frozen=True)
class PodFigures:
    """One pod's figures in a summary; None where the kubelet has none yet."""

    uid: str
    cpu_s: float | None
    working_set: int | None
    started: float | None  # the pod's startTime (epoch seconds)


@dataclass(frozen=True)
class PodPlace:
    """Where a server's pod runs (from the pod object)."""

    node: str
    namespace: str
    name: str
    uid: str
    started: float | None = None  # the pod's status.startTime (epoch seconds)


def parse_time(text: object) -> float | None:
    """An RFC 3339 time of the Kubernetes API (``2026-12-02T18:21:39Z``) as epoch seconds."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _number(block: object, key: str) -> float | None:
    value = block.get(key) if isinstance(block, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _pod_or_containers(pod: Mapping, block: str, key: str) -> float | None:
    """The larger of the pod's own figure and the sum over its containers (when every
    container has it).  The pod's cgroup counts what exited containers used too, so it is
    normally the larger; but for its first seconds the kubelet reports it as 0 while the
    containers already have figures (seen on the lab's kubelet, tests/data)."""
    own = _number(pod.get(block), key)
    containers = pod.get("containers") or []
    values = [_number(c.get(block), key) for c in containers if isinstance(c, Mapping)]
    summed = None if not values or None in values else sum(v for v in values if v is not None)
    if own is None or summed is None:
        return own if summed is None else summed
    return max(own, summed)


def pod_figures(summary: Mapping) -> dict[tuple[str, str], PodFigures]:
    """Every pod of a kubelet's summary, by (namespace, name) (pure)."""
    found: dict[tuple[str, str], PodFigures] = {}
    pods = summary.get("pods") if isinstance(summary, Mapping) else None
    for pod in pods if isinstance(pods, list) else []:
        ref = pod.get("podRef") if isinstance(pod, Mapping) else None
        if not isinstance(ref, Mapping) or not ref.get("name"):
            continue
        cpu = _pod_or_containers(pod, "cpu", "usageCoreNanoSeconds")
        memory = _pod_or_containers(pod, "memory", "workingSetBytes")
        found[(str(ref.get("namespace", "")), str(ref["name"]))] = PodFigures(
            uid=str(ref.get("uid", "")),
            cpu_s=None if cpu is None else cpu / 1e9,
            working_set=None if memory is None else int(memory),
            started=parse_time(pod.get("startTime")),
        )
    return found


def kubelet_url(node: Mapping) -> str:
    """``https://<address>:<port>`` of a Node object's kubelet (pure); ValueError says
    what the node lacks."""
    name = (node.get("metadata") or {}).get("name", "?")
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"node {name} names no kubelet port (status.daemonEndpoints)")
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    for kind in ADDRESS_TYPES:
        address = addresses.get(kind)
        if address:
            host = f"[{address}]" if ":" in address else address
            return f"https://{host}:{port}"
    raise ValueError(f"node {name} has no address (status.addresses)")


def pod_place(pod: Mapping | None) -> PodPlace | None:
    """Where a pod (KubeSpawner's reflector keeps them as API dicts) runs; None before it
    is scheduled (pure)."""
    if not pod:
        return None
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    node = spec.get("nodeName")
    if not node or not meta.get("name"):
        return None
    started = parse_time((pod.get("status") or {}).get("startTime"))
    return PodPlace(node, meta.get("namespace", ""), meta["name"], meta.get("uid", ""), started)


def reflected_pod(spawner) -> Mapping | None:
    """The spawner's pod as KubeSpawner's pod reflector last saw it (no API call)."""
    try:
        return spawner.pod_reflector.pods.get(f"{spawner.namespace}/{spawner.pod_name}")
    except AttributeError:  # no reflector yet: the spawner has not started watching
        return None


# --------------------------------------------------------------------------- the calls


class StatsError(RuntimeError):
    """A node's figures could not be had; the message says why (never a secret)."""


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        body = " ".join(exc.response.text.split())[:200]
        return (
            f"HTTP {exc.response.status_code}: {body}"
            if body
            else f"HTTP {exc.response.status_code}"
        )
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class KubeletStats:
    """The kubelets' Summary API, with the hub's service-account token and cluster CA."""

    def __init__(
        self,
        credentials: Path = SERVICE_ACCOUNT,
        api_url: str | None = None,
        timeout: float = 10.0,
    ):
        self.credentials = credentials
        self.api_url = api_url or self._in_cluster_api()
        self.timeout = timeout
        self.nodes: dict[str, str] = {}  # node name -> kubelet URL
        self._http: httpx.AsyncClient | None = None

    @staticmethod
    def _in_cluster_api() -> str:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        return f"https://{f'[{host}]' if ':' in host else host}:{port}"

    async def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            ca = self.credentials / "ca.crt"
            context = await asyncio.to_thread(ssl.create_default_context, cafile=str(ca))
            self._http = httpx.AsyncClient(verify=context, timeout=self.timeout)
        return self._http

    async def _get(self, url: str) -> dict:
        """GET ``url`` as the hub's service account (the token re-read each time: the
        kubelet mounts a rotating one)."""
        try:
            token = (await asyncio.to_thread((self.credentials / "token").read_text)).strip()
            http = await self._client()
            r = await http.get(url, headers={"Authorization": f"Bearer {token}"})
            r.raise_for_status()
            return r.json()
        except (OSError, ValueError, httpx.HTTPError) as exc:
            raise StatsError(f"{url.split('?')[0]}: {_reason(exc)}") from None

    async def kubelet(self, node: str) -> str:
        if node not in self.nodes:
            found = await self._get(f"{self.api_url}/api/v1/nodes/{node}")
            try:
                self.nodes[node] = kubelet_url(found)
            except ValueError as exc:
                raise StatsError(str(exc)) from None
        return self.nodes[node]

    async def summary(self, node: str) -> dict:
        """The node's summary (cpu and memory only); StatsError says why not."""
        url = await self.kubelet(node)
        try:
            return await self._get(url + SUMMARY)
        except StatsError:
            self.nodes.pop(node, None)  # the node may have a new address next round
            raise


# --------------------------------------------------------------------------- the collector


@dataclass
class _PodWatch(Watch):
    uid: str = ""  # the pod's, once its start is recorded
    sampled: bool = False


class KubeUsageCollector(Collector):
    """Follows every server the hub starts on Kubernetes (see the module docstring)."""

    watch_class = _PodWatch

    def __init__(
        self,
        record: Path,
        stats: KubeletStats | None = None,
        every: float = 10.0,
        write_every: float = 300.0,
        starting_every: float = 2.0,
        locate: Callable[[object], PodPlace | None] = lambda s: pod_place(reflected_pod(s)),
    ):
        super().__init__(record, every, write_every, starting_every)
        self.stats = stats or KubeletStats()
        self.locate = locate
        self.failing: dict[str, str] = {}  # node -> the reason last logged

    def recorded(self, w: Watch) -> bool:
        return bool(getattr(w, "uid", ""))

    async def _node(self, node: str) -> dict[tuple[str, str], PodFigures] | None:
        """One node's pods, or None when its kubelet cannot be asked (logged once)."""
        try:
            figures = pod_figures(await self.stats.summary(node))
        except StatsError as exc:
            if self.failing.get(node) != str(exc):
                self.failing[node] = str(exc)
                log.warning(
                    "lakehub: no usage figures from node %s (%s); its servers' hours, CPU"
                    " time and memory go unrecorded until it answers",
                    node,
                    exc,
                )
            return None
        if self.failing.pop(node, None) is not None:
            log.info("lakehub: usage figures from node %s again", node)
        return figures

    async def sample_once(self) -> None:
        places = {key: self.locate(w.spawner) for key, w in self.watching.items()}
        nodes = sorted({p.node for p in places.values() if p is not None})
        polled = dict(
            zip(nodes, await asyncio.gather(*(self._node(n) for n in nodes)), strict=True)
        )
        now = time.monotonic()
        for key, place in places.items():
            w = self.watching.get(key)
            if not isinstance(w, _PodWatch):  # stopped meanwhile
                continue
            pods = polled.get(place.node) if place is not None else None
            figures = pods.get((place.namespace, place.name)) if pods and place else None
            if not w.uid:
                if figures is None or (place is not None and figures.uid != place.uid):
                    if now > w.until:  # never seen running: nothing to record
                        self.watching.pop(key, None)
                    continue
                w.uid = figures.uid
                # the pod object's start (what `kubectl get pod` shows); the summary's
                # own may differ by a second
                started = (place.started if place else None) or figures.started or time.time()
                await self._write({**w.base, "event": "start", "t": started})
            elif place is None or place.uid != w.uid:  # the pod went without the hub's stop
                self.watching.pop(key, None)
                await self._write(w.figures("stop"))
                continue
            if figures is None or figures.uid != w.uid:
                continue  # the kubelet did not answer, or has no figures yet
            if figures.cpu_s is not None:
                w.cpu = max(w.cpu, figures.cpu_s)
            if figures.working_set is not None:
                w.peak = max(w.peak, figures.working_set)
            if not (figures.cpu_s or figures.working_set):
                continue  # zeros: the kubelet has not measured the pod yet
            # the first figures at once, then one line every write_every
            if not w.sampled or now - w.written >= self.write_every:
                w.sampled, w.written = True, now
                await self._write(w.figures("sample"))
