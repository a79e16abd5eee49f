"""The usage collector on Kubernetes (spawner_hooks.kube_usage): the pure parsing of a
kubelet's summary and of Node objects, the collector's rounds, and its HTTPS calls.

The summary document is one the real one-node cluster's kubelet gave for a student's pod
(``tests/data/kubelet-summary.json``, captured by tests/test_cluster.py on this machine
and cut down to two pods).  The calls are made against a stand-in for the apiserver and
the kubelet: an HTTPS server on 127.0.0.1 with a certificate of a test CA (testkit.pki)
that serves those documents and checks the bearer token, because a kubelet cannot run
outside the cluster suite; the real kubelet is asked in tests/test_cluster.py.  The
collector's rounds use a stand-in ``stats`` object feeding summaries, and a ``locate``
function standing in for KubeSpawner's pod reflector.
"""

from __future__ import annotations

import asyncio
import copy
import http.server
import json
import logging
import ssl
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from courses.usage import read_records, sessions
from spawner_hooks.kube_usage import (
    KubeletStats,
    KubeUsageCollector,
    PodPlace,
    StatsError,
    kubelet_url,
    parse_time,
    pod_figures,
    pod_place,
)
from testkit.pki import issue

SUMMARY = json.loads((Path(__file__).parent / "data" / "kubelet-summary.json").read_text())
TOKEN = "sa-token-" + "x" * 40  # noqa: S105  (a stand-in; must never reach a log)


def node_object(port: int, addresses: list[dict] | None = None) -> dict:
    return {
        "metadata": {"name": "node-a"},
        "status": {
            "addresses": addresses
            if addresses is not None
            else [
                {"type": "Hostname", "address": "node-a"},
                {"type": "InternalIP", "address": "127.0.0.1"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        },
    }


def captured(prefix: str) -> dict:
    """A pod of the captured summary: the student's (``jupyter-``), or the hub's
    (``hub-``), four seconds old when captured."""
    (pod,) = [p for p in SUMMARY["pods"] if p["podRef"]["name"].startswith(prefix)]
    return pod


# --------------------------------------------------------------------------- pure parts


def test_a_pods_figures_come_from_its_own_cumulative_cpu_and_working_set():
    pod = captured("jupyter-")
    ref = pod["podRef"]
    found = pod_figures(SUMMARY)[(ref["namespace"], ref["name"])]
    assert found.uid == ref["uid"]
    assert found.cpu_s == pod["cpu"]["usageCoreNanoSeconds"] / 1e9 > 0
    assert found.working_set == pod["memory"]["workingSetBytes"] > 0
    assert found.started == parse_time(pod["startTime"])
    assert len(pod_figures(SUMMARY)) == len(SUMMARY["pods"])


def test_a_young_pod_measured_only_in_its_containers_has_their_figures():
    """The kubelet reported the four-second-old hub pod's own CPU and memory as 0 while
    its container had 2.4 s and 178 MB: the containers' figures count."""
    pod = captured("hub-")
    assert pod["cpu"]["usageCoreNanoSeconds"] == 0 and pod["memory"]["workingSetBytes"] == 0
    (container,) = pod["containers"]
    found = pod_figures(SUMMARY)[(pod["podRef"]["namespace"], pod["podRef"]["name"])]
    assert found.cpu_s == container["cpu"]["usageCoreNanoSeconds"] / 1e9 > 1
    assert found.working_set == container["memory"]["workingSetBytes"] > 0


def test_without_pod_figures_the_containers_are_summed_or_nothing_is_claimed():
    doc = copy.deepcopy(SUMMARY)
    (pod,) = [p for p in doc["pods"] if p["podRef"]["name"].startswith("jupyter-")]
    del pod["cpu"], pod["memory"]
    pod["containers"] = [
        {"name": "notebook", "cpu": {"usageCoreNanoSeconds": 3_000_000_000}},
        {"name": "sidecar", "cpu": {"usageCoreNanoSeconds": 500_000_000}},
    ]
    key = (pod["podRef"]["namespace"], pod["podRef"]["name"])
    found = pod_figures(doc)[key]
    assert (found.cpu_s, found.working_set) == (3.5, None)  # no container has memory
    pod["containers"][1]["cpu"] = {}  # one container without: the sum would be wrong
    assert pod_figures(doc)[key].cpu_s is None


def test_odd_documents_give_no_pods_rather_than_an_error():
    assert pod_figures({}) == {}
    assert pod_figures({"pods": "nope"}) == {}
    assert pod_figures({"pods": [None, {"podRef": {}}, {"podRef": {"name": "p"}}]}) == {
        ("", "p"): pod_figures({"pods": [{"podRef": {"name": "p"}}]})[("", "p")]
    }
    assert parse_time("yesterday") is None and parse_time(None) is None
    assert parse_time("1970-01-01T00:01:00Z") == 60.0


def test_the_kubelet_is_called_on_the_nodes_internal_address_and_its_own_port():
    assert kubelet_url(node_object(20250)) == "https://127.0.0.1:20250"
    v6 = node_object(10250, [{"type": "InternalIP", "address": "fd00::5"}])
    assert kubelet_url(v6) == "https://[fd00::5]:10250"
    only_name = node_object(10250, [{"type": "Hostname", "address": "node-a"}])
    assert kubelet_url(only_name) == "https://node-a:10250"
    with pytest.raises(ValueError, match="node node-a names no kubelet port"):
        kubelet_url(node_object(0))
    with pytest.raises(ValueError, match="node node-a has no address"):
        kubelet_url(node_object(10250, []))


def test_a_pod_is_placed_once_it_is_scheduled():
    pod = {"metadata": {"name": "jupyter-ada", "namespace": "lh", "uid": "u1"}, "spec": {}}
    assert pod_place(pod) is None and pod_place(None) is None
    pod["spec"]["nodeName"] = "node-a"
    assert pod_place(pod) == PodPlace("node-a", "lh", "jupyter-ada", "u1")
    pod["status"] = {"startTime": "2026-12-02T18:53:44Z"}  # the start the record gets
    assert pod_place(pod).started == 1796237624.0


# --------------------------------------------------------------------------- the rounds


class Stats:
    """Stands in for KubeletStats: the summaries a round gets, per node, and the calls."""

    def __init__(self):
        self.by_node: dict[str, dict | str] = {}
        self.calls: list[str] = []

    async def summary(self, node: str) -> dict:
        self.calls.append(node)
        answer = self.by_node[node]
        if isinstance(answer, str):
            raise StatsError(answer)
        return answer


def summary_of(*pods: tuple[str, str, float, int]) -> dict:
    """A summary with pods (name, uid, CPU seconds, working set)."""
    return {
        "pods": [
            {
                "podRef": {"name": name, "namespace": "lh", "uid": uid},
                "startTime": "2026-12-02T10:00:00Z",
                "cpu": {"usageCoreNanoSeconds": int(cpu * 1e9)},
                "memory": {"workingSetBytes": ws},
            }
            for name, uid, cpu, ws in pods
        ]
    }


def test_rounds_record_start_first_sample_peak_and_a_pod_that_went(tmp_path, caplog):
    record = tmp_path / "sessions.jsonl"
    stats = Stats()
    places: dict[str, PodPlace | None] = {}

    def spawner(user: str) -> SimpleNamespace:
        return SimpleNamespace(user=SimpleNamespace(name=user), name="", start_timeout=60)

    async def rounds() -> None:
        collector = KubeUsageCollector(
            record, stats, every=3600, write_every=3600, locate=lambda s: places[s.user.name]
        )
        ada, bob = spawner("ada"), spawner("bob")
        places.update(ada=None, bob=None)
        collector.watch(ada)
        collector.watch(bob)
        collector.sampler.cancel()  # the rounds are made here, one by one
        await collector.sample_once()  # not scheduled yet: no call, nothing recorded
        assert stats.calls == [] and not record.exists()
        places["ada"] = PodPlace("node-a", "lh", "jupyter-ada", "u-ada")
        places["bob"] = PodPlace("node-a", "lh", "jupyter-bob", "u-bob")
        stats.by_node["node-a"] = summary_of(("jupyter-ada", "u-ada", 0.0, 0))
        await collector.sample_once()  # ada's pod listed, not yet measured: a start only
        stats.by_node["node-a"] = summary_of(
            ("jupyter-ada", "u-ada", 2.0, 300), ("jupyter-bob", "u-bob", 1.0, 100)
        )
        await collector.sample_once()
        assert stats.calls == ["node-a", "node-a"]  # one call per round for both pods
        stats.by_node["node-a"] = "https://node-a:10250/stats/summary: HTTP 403: Forbidden"
        with caplog.at_level(logging.INFO, logger="lakehub.usage"):
            await collector.sample_once()
            await collector.sample_once()  # the same failure: no second line
            stats.by_node["node-a"] = summary_of(("jupyter-ada", "u-ada", 5.0, 200))
            places["bob"] = None  # bob's pod is gone without the hub stopping it
            await collector.sample_once()
        await collector.stopped(ada)
        assert collector.watching == {}

    asyncio.run(rounds())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("lakehub: no usage figures from node node-a (https://node-a")
    assert "HTTP 403" in lines[0] and lines[1] == "lakehub: usage figures from node node-a again"
    assert all(r.exc_info is None for r in caplog.records)
    events = [(r["user"], r["event"]) for r in read_records(record)]
    assert events == [
        ("ada", "start"),
        ("ada", "sample"),  # the first figures at once (not the zeros before them)
        ("bob", "start"),
        ("bob", "sample"),
        ("bob", "stop"),
        ("ada", "stop"),
    ]
    found = {s.user: s for s in sessions(read_records(record))}
    assert found["ada"].start == parse_time("2026-12-02T10:00:00Z")
    assert (found["ada"].cpu_s, found["ada"].peak_rss) == (5.0, 300)  # the largest seen
    assert (found["bob"].cpu_s, found["bob"].end is not None) == (1.0, True)


def test_a_pod_the_kubelet_never_answers_for_is_given_up_after_the_start_timeout(tmp_path):
    stats = Stats()
    stats.by_node["node-a"] = "https://node-a:10250/stats/summary: ConnectError"
    place = PodPlace("node-a", "lh", "jupyter-ada", "u-ada")

    async def rounds() -> KubeUsageCollector:
        collector = KubeUsageCollector(
            tmp_path / "s.jsonl", stats, every=3600, locate=lambda s: place
        )
        who = SimpleNamespace(user=SimpleNamespace(name="ada"), name="", start_timeout=1e-9)
        collector.watch(who)
        collector.sampler.cancel()
        await asyncio.sleep(0.01)
        await collector.sample_once()
        return collector

    assert asyncio.run(rounds()).watching == {}
    assert not (tmp_path / "s.jsonl").exists()


# --------------------------------------------------------------------------- the calls


@pytest.fixture(scope="module")
def cluster_pki(tmp_path_factory):
    """Two CAs: the cluster's (the kubelet's certificate) and a stranger's."""
    folder = tmp_path_factory.mktemp("pki")
    ours = issue(folder / "ours", node_name="node-a", node_ip="127.0.0.1", service_ip="10.0.0.1")
    other = issue(folder / "other", node_name="node-a", node_ip="127.0.0.1", service_ip="10.0.0.1")
    return ours, other


@pytest.fixture(scope="module")
def kubelet(cluster_pki):
    """HTTPS on 127.0.0.1 standing in for the apiserver and the kubelet (see above)."""
    ours, _ = cluster_pki
    seen: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            seen.append((self.path, self.headers.get("Authorization", "")))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                body, status = b"Unauthorized", 401
            elif self.path == "/api/v1/nodes/node-a":
                body, status = json.dumps(node_object(self.server.server_port)).encode(), 200
            elif self.path == "/stats/summary?only_cpu_and_memory=true":
                body, status = json.dumps(SUMMARY).encode(), 200
            else:
                body, status = b"not here", 404
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ours.cert("kubelet-serving"), ours.key("kubelet-serving"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def credentials(folder: Path, ca: Path, token: str = TOKEN) -> Path:
    """A service-account mount: token and ca.crt."""
    folder.mkdir()
    (folder / "token").write_text(token + "\n")
    (folder / "ca.crt").write_bytes(ca.read_bytes())
    return folder


def test_the_summary_is_fetched_with_the_token_and_the_cluster_ca(kubelet, cluster_pki, tmp_path):
    url, seen = kubelet
    ours, _ = cluster_pki
    stats = KubeletStats(credentials(tmp_path / "sa", ours.ca), api_url=url)

    async def go() -> dict:
        return await stats.summary("node-a")

    assert asyncio.run(go()) == SUMMARY
    assert [path for path, _ in seen[-2:]] == [
        "/api/v1/nodes/node-a",
        "/stats/summary?only_cpu_and_memory=true",
    ]
    assert stats.nodes == {"node-a": url}


@pytest.mark.parametrize("problem", ["stranger's CA", "wrong token"])
def test_a_failing_call_says_why_in_one_line_without_the_token(
    kubelet, cluster_pki, tmp_path, caplog, problem
):
    url, _ = kubelet
    ours, other = cluster_pki
    ca, token = (other.ca, TOKEN) if problem == "stranger's CA" else (ours.ca, "another")
    stats = KubeletStats(credentials(tmp_path / "sa", ca, token), api_url=url)
    place = PodPlace("node-a", "lh", "jupyter-ada", "u")

    async def rounds() -> None:
        collector = KubeUsageCollector(
            tmp_path / "s.jsonl", stats, every=3600, locate=lambda s: place
        )
        collector.watch(SimpleNamespace(user=SimpleNamespace(name="ada"), name=""))
        collector.sampler.cancel()
        await collector.sample_once()
        await collector.sample_once()

    with caplog.at_level(logging.INFO, logger="lakehub.usage"):
        asyncio.run(rounds())
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"lakehub: no usage figures from node node-a ({url}/api/v1/nodes")
    if problem == "stranger's CA":
        assert "CERTIFICATE_VERIFY_FAILED" in line
    else:
        assert "HTTP 401" in line
    assert TOKEN not in line and "another" not in line and caplog.records[0].exc_info is None
    assert not (tmp_path / "s.jsonl").exists()
