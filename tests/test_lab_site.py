"""The one-node lab's site file (testkit.cluster.lab_site, a pure builder): a valid site
that the chart renders for a node without image pulls, cloud or load balancer."""

from __future__ import annotations

import yaml

from hub_config import values as hv
from lakehub.contract import ISSUER_SERVICE, service_prefix
from sitefile import parse_site
from testkit import nodeconf
from testkit.cluster import IMAGES, LabPorts, lab_site

NODE_IP = "192.0.2.7"
PORTS = LabPorts(rucio=18110, demo_http=18111, hub=30080)


def test_the_lab_site_is_valid_and_renders():
    data = lab_site(NODE_IP, PORTS, token_lifetime_seconds=120)
    site = parse_site(yaml.safe_load(yaml.safe_dump(data)))  # as written to the file
    values = hv.render_values(site, data)
    assert site.tokens.lifetime_seconds == 120
    assert site.rucio.default.rucio_host == f"http://{NODE_IP}:{PORTS.rucio}"
    # students and Rucio reach the hub on the node's NodePort; Rucio trusts the token
    # service behind it
    assert values["jupyterhub"]["proxy"]["service"] == {
        "type": "NodePort",
        "nodePorts": {"http": PORTS.hub},
    }
    assert site.kubernetes.token_issuer_url == (
        f"http://{NODE_IP}:{PORTS.hub}{service_prefix(ISSUER_SERVICE)}"
    )


def test_the_lab_switches_off_what_needs_z2jhs_own_images():
    values = hv.render_values(parse_site(data := lab_site(NODE_IP, PORTS)), data)["jupyterhub"]
    assert values["prePuller"]["hook"]["enabled"] is False
    assert values["prePuller"]["continuous"]["enabled"] is False
    assert values["scheduling"]["userScheduler"]["enabled"] is False
    assert values["scheduling"]["userPlaceholder"]["enabled"] is False
    assert values["singleuser"]["cloudMetadata"]["blockWithIptables"] is False
    # only lakehub's images, used as imported (nothing can be pulled)
    images = [values["hub"]["image"], values["singleuser"]["image"]]
    images.append(values["proxy"]["chp"]["image"])
    assert {(i["name"], i["tag"]) for i in images} == set(IMAGES.values())
    assert {i["pullPolicy"] for i in images} == {"IfNotPresent"}


def test_the_lab_uses_the_shared_storage_class_and_names_the_node_in_egress():
    data = lab_site(NODE_IP, PORTS)
    values = hv.render_values(parse_site(data), data)
    assert values["cache"]["claim"]["storageClassName"] == nodeconf.SHARED_STORAGE_CLASS
    (rule,) = values["networkPolicy"]["singleuserEgress"]
    assert rule["to"] == [{"ipBlock": {"cidr": f"{NODE_IP}/32"}}]
    assert {p["port"] for p in rule["ports"]} == {PORTS.rucio, PORTS.demo_http}
