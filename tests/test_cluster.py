"""lakehub's whole release on a real one-node Kubernetes cluster, as a sysadmin deploys it
and a student uses it.

The lab (:class:`testkit.cluster.Lab`, the same code as ``make cluster-up``) starts the
node (etcd, the control plane, containerd, the kubelet, kube-proxy, CoreDNS and the
volume provisioner as host processes) with the images of ``make images``, a real Rucio
server on the node's address with the demo dataset (its files also served read-only over
HTTP for the cache service in its pod), the namespace, the Secrets and the site file.
Then, in order, as one story:

1. ``make deploy SITE=<lab site>`` runs the real ``helm/deploy.sh deploy`` (helm
   ``--wait --atomic``) with no kubectl on PATH, so it must find the one
   ``make k8s-tools`` built; the hub, the proxy, the token service and the cache service
   are Ready when it returns.
2. Debian's Chromium (Playwright) signs the admin and a student up on the hub's
   NodePort, the admin approves the student, the student logs in and lands in
   JupyterLab; their pod runs the analysis image with their own claim, Bound and
   mounted at the home.
3. In the student's kernel (through the proxy): ``rucio whoami`` from a login shell
   answers with the student's account; the H->yy notebook runs top to bottom reading
   through the in-cluster cache (``lakehub.fetch``) and its histogram equals, bin by
   bin, the same notebook run on the host on the same files.
4. Tokens live 120 s here: the token service renews the student's token, the renewed
   token reaches the Secret-mounted file in the running pod through the kubelet (the
   delay is printed), and Rucio still answers from the pod after the first token expired.
5. The hub's usage collector follows the student's pod through the kubelet's Summary API
   (the hub's service account, the cluster CA): the sessions record on the hub's volume
   gets the start and a sample with the pod's CPU time and memory, which the kubelet
   itself confirms; the course report, built on the host with the admin's token, shows
   the student's server hours and CPU time from the hub's usage endpoint, which refuses
   the student's own token.
6. A second ``make deploy`` reports no change and leaves the hub pod alone; an upgrade
   with another site name restarts the hub and keeps the student's claim, their file
   and the hub's database (the student logs in again, their server restarts and finds
   the file); ``make undeploy`` removes the release and keeps the claims;
   ``make undeploy PURGE=1`` removes them.

Nothing is mocked.  Not covered here: NetworkPolicy.  The node's bridge network plugin
has no policy engine, so the chart's policies are accepted but not enforced; they are
only rendered and validated (tests/test_chart.py).  If the node cannot start, every test
fails with the reason.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from courses.usage import read_records
from lakehub.contract import (
    CACHE_MOUNT,
    HUB_USAGE_DIR,
    POD_HOME,
    SESSIONS_FILE,
    TOKEN_FILE,
    TOKEN_MOUNT,
    course_group,
)
from localstack.hubclient import HubAdmin, login, user_api_token
from testkit import hyy
from testkit.browser import launch as launch_chromium
from testkit.cluster import ADMIN_USER, LAB_COURSE, Lab, LabError, run_make
from testkit.harness import KernelSession
from testkit.lab_session import run_code, token_propagation
from testkit.node import NodeError
from tokens.jwt import expiry

# The first test carries the lab fixture: on a fresh machine it builds the images
# (debootstrap, wheelhouses: about ten minutes here) before the node and the release
# start, which the suite's 600 s per test cannot hold (a fresh machine's CI once
# failed every test here on it).  Warm, the whole module takes about four minutes.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3600)]

TOKEN_LIFETIME = 120  # seconds: renewal after 80 s, expiry after 120 s
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).parent / "artifacts"
SERVICES = ("hub", "proxy", "lakehub-issuer", "lakehub-cache")


# --------------------------------------------------------------------------- the lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    # the images the lab's pods run, as `make cluster-up` has them (cached: a warm run
    # only checks they are up to date)
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-images.sh"), "all"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert built.returncode == 0, f"scripts/build-images.sh all failed:\n{built.stderr[-3000:]}"
    lab = Lab(tmp_path_factory.mktemp("lab") / "state", token_lifetime_seconds=TOKEN_LIFETIME)
    try:
        lab.start()
    except (LabError, NodeError, OSError, RuntimeError) as e:
        lab.stop()
        pytest.fail(f"the one-node lab did not start: {e}")
    print(f"\nlab up: {', '.join(f'{k} {v:.0f} s' for k, v in lab.timings.items())}")
    yield lab
    left = lab.stop()
    assert left == [], f"the lab left this behind: {left}"


def path_without_kubectl(folder: Path) -> str:
    """A PATH with every program of the current one but kubectl (symlinks in ``folder``)."""
    folder.mkdir(exist_ok=True)
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = folder / entry.name
            if entry.name != "kubectl" and not link.exists() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    return str(folder)


@pytest.fixture(scope="module")
def deployed(lab, tmp_path_factory):
    """The first ``make deploy``, with no kubectl on PATH."""
    path = path_without_kubectl(tmp_path_factory.mktemp("bin"))
    started = time.monotonic()
    done = run_make(lab, "deploy", env={"PATH": path})
    seconds = time.monotonic() - started
    print(f"\nfirst make deploy: {seconds:.0f} s")
    return done, seconds


def ready_replicas(lab: Lab, name: str) -> int:
    deployment = lab.node.get(f"/apis/apps/v1/namespaces/{lab.namespace}/deployments/{name}")
    return (deployment or {}).get("status", {}).get("readyReplicas", 0)


def pod(lab: Lab, name: str) -> dict | None:
    return lab.node.get(f"/api/v1/namespaces/{lab.namespace}/pods/{name}")


def hub_pod_uid(lab: Lab) -> str:
    pods = lab.node.get(f"/api/v1/namespaces/{lab.namespace}/pods?labelSelector=component%3Dhub")
    running = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 1, [p["metadata"]["name"] for p in running]
    return running[0]["metadata"]["uid"]


def test_make_deploy_returns_with_the_whole_release_ready(lab, deployed):
    done, _ = deployed
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    # no kubectl on PATH: deploy.sh found the one `make k8s-tools` built
    kubectl = re.search(r"kubectl:\s+(\S+)", done.stderr).group(1)
    assert kubectl == lab.node.tools["KUBECTL"]
    # the diff it printed shows no secret of the site
    for secret in lab.secret_values():
        assert secret not in done.stdout + done.stderr
    for name in SERVICES:
        assert ready_replicas(lab, name) == 1, name  # helm --wait returned after this


# --------------------------------------------------------------------------- a student


@pytest.fixture(scope="module")
def student(lab, deployed):
    """The admin and a student sign up in Chromium; the admin approves the student; the
    student logs in and gets JupyterLab.  Returns name, password and timings."""
    done, _ = deployed
    assert done.returncode == 0, "make deploy failed (see the first test)"
    ARTIFACTS.mkdir(exist_ok=True)
    url = lab.public_url
    name, password = "student-" + secrets.token_hex(3), secrets.token_urlsafe(12)
    admin_password = secrets.token_urlsafe(12)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()

            def sign_up(user: str, secret: str) -> str:
                page.goto(f"{url}/hub/signup")
                page.fill("#username_input", user)
                page.fill("#password_input", secret)
                page.fill("#password_confirmation_input", secret)
                page.click("#signup_submit")
                alert = page.locator("div.alert[role=alert]").first
                expect(alert).to_be_visible(timeout=30_000)
                return f"{alert.get_attribute('class')}: {alert.inner_text()}"

            def log_in(user: str, secret: str) -> None:
                page.context.clear_cookies()
                page.goto(f"{url}/hub/login")
                page.fill("#username_input", user)
                page.fill("#password_input", secret)
                page.click("#login_submit")

            admin_said = sign_up(ADMIN_USER, admin_password)
            student_said = sign_up(name, password)
            log_in(ADMIN_USER, admin_password)
            page.goto(f"{url}/hub/authorize")
            row = page.locator(f"tr#{name}")
            row.get_by_role("button", name="Authorize").click()
            expect(page.locator(f"tr#{name}")).to_contain_text("Yes", timeout=30_000)

            log_in(name, password)
            started = time.monotonic()
            expect(page.locator(".jp-LauncherCard").first).to_be_visible(timeout=240_000)
            login_to_lab = time.monotonic() - started
            page.screenshot(path=str(ARTIFACTS / "cluster-jupyterlab.png"))
            lab_url = page.url
        finally:
            browser.close()
    print(f"\nstudent {name}: login to JupyterLab in {login_to_lab:.1f} s")
    return {
        "name": name,
        "password": password,
        "admin_password": admin_password,
        "admin_said": admin_said,
        "student_said": student_said,
        "lab_url": lab_url,
        "token": user_api_token(url, name, password, note="test_cluster"),
    }


def run(lab: Lab, student: dict, code: str, limit_s: float = 120) -> str:
    return run_code(lab.public_url, student["name"], student["token"], code, limit_s)


def test_a_student_signs_up_logs_in_and_gets_a_pod_with_their_own_volume(lab, student):
    name = student["name"]
    assert "alert-success" in student["admin_said"]  # admins may log in at once
    assert "alert-info" in student["student_said"]  # others wait for an admin
    assert "sent to the admin" in student["student_said"]
    assert re.search(rf"/user/{name}/lab", student["lab_url"])
    spec = pod(lab, f"jupyter-{name}")
    assert spec is not None and spec["status"]["phase"] == "Running"
    (container,) = spec["spec"]["containers"]
    assert container["image"] == "localhost/lakehub/singleuser:0.1.0"
    volumes = {v["name"]: v for v in spec["spec"]["volumes"]}
    (home,) = [m for m in container["volumeMounts"] if m["mountPath"] == POD_HOME]
    claim_name = volumes[home["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim_name == f"claim-{name}"
    claim = lab.node.get(f"/api/v1/namespaces/{lab.namespace}/persistentvolumeclaims/{claim_name}")
    assert claim["status"]["phase"] == "Bound"
    # what the student writes in their home lands in that volume's folder on the node
    run(lab, student, "open('/home/jovyan/kept.txt', 'w').write('written before the upgrade')")
    volume = lab.node.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
    folder = Path(volume["spec"]["hostPath"]["path"])
    assert (folder / "kept.txt").read_text() == "written before the upgrade"


# --------------------------------------------------------------------------- in the pod

WHOAMI = """
import subprocess
# a JupyterLab terminal is a login shell: the same PATH a student has there
print(subprocess.run(["bash", "-lc", "rucio whoami"], capture_output=True, text=True).stdout)
"""


def whoami(lab: Lab, student: dict) -> str | None:
    match = re.search(r"^account\s*:\s*(\S+)", run(lab, student, WHOAMI), re.M)
    return match.group(1) if match else None


def test_rucio_whoami_in_the_pod_answers_with_the_students_account(lab, student):
    assert whoami(lab, student) == student["name"]


def test_the_hyy_notebook_reads_through_the_cache_and_matches_the_host(lab, student):
    async def go() -> dict:
        async with KernelSession(lab.public_url, student["name"], student["token"]) as k:
            return await hyy.in_kernel(k)

    in_pod = asyncio.run(go())
    on_host = hyy.on_host(lab.demo_files())
    assert "shared cache" in in_pod["source"]
    assert all(f.startswith(CACHE_MOUNT + "/") for f in in_pod["files"]), in_pod["files"]
    assert [Path(f).name for f in in_pod["files"]] == [f.name for f in lab.demo_files()]
    assert in_pod["cut_flow"] == on_host["cut_flow"]
    assert in_pod["histogram"] == on_host["histogram"]  # exact bin contents
    assert sum(in_pod["histogram"]) > 1000


# --------------------------------------------------------------------------- tokens


def test_the_renewed_token_reaches_the_pod_and_rucio_answers_after_the_first_expired(lab, student):
    name = student["name"]
    seen = token_propagation(
        lab.node, lab.namespace, lab.public_url, name, student["token"], TOKEN_LIFETIME
    )
    print(f"\nrenewed token in the pod's Secret file {seen.delay_s:.1f} s after the Secret changed")
    first_expiry = expiry(seen.first)
    assert expiry(seen.renewed) > first_expiry
    assert seen.delay_s < 60  # syncFrequency 10 s; the upstream default would give ~70 s
    live = run(lab, student, f"print(open('{TOKEN_MOUNT}/{TOKEN_FILE}').read())").strip()
    assert expiry(live) > first_expiry  # the session itself uses a renewed token
    lab.node.wait_until(
        lambda: time.time() > first_expiry + 2,
        timeout=TOKEN_LIFETIME + 10,
        what="the first token expired",
    )
    assert whoami(lab, student) == name


# --------------------------------------------------------------------------- usage


def hub_volume(lab: Lab) -> Path:
    """The folder of the hub's volume (hub-db-dir) on the node (a hostPath volume)."""
    ns = lab.namespace
    claim = lab.node.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/hub-db-dir")
    volume = lab.node.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
    return Path(volume["spec"]["hostPath"]["path"])


def test_the_hub_records_the_students_pod_from_the_kubelet_and_the_report_shows_it(
    lab, student, tmp_path
):
    """The student's server has run the H->yy notebook: the hub's record has its start
    (the pod's own start time) and a sample from the kubelet; stopping the server writes
    the stop with the last figures, which the report on this machine shows."""
    name, ns = student["name"], lab.namespace
    # the record on the hub's volume, where the hub pod writes it (HUB_USAGE_DIR)
    record = hub_volume(lab) / Path(HUB_USAGE_DIR).name / SESSIONS_FILE

    def mine(event: str) -> list[dict]:
        return [r for r in read_records(record) if r["user"] == name and r["event"] == event]

    def sampled() -> dict | None:
        found = [r for r in mine("sample") if r["cpu_s"] > 0 and r["peak_rss"] > 0]
        return found[0] if found else None

    sample = lab.node.wait_until(sampled, timeout=120, what=f"a usage sample of {name}")
    (start,) = mine("start")
    assert start["session"] == sample["session"] and start["t"] <= sample["t"]
    spec = pod(lab, f"jupyter-{name}")
    started = dt.datetime.fromisoformat(spec["status"]["startTime"].replace("Z", "+00:00"))
    assert start["t"] == started.timestamp()
    # the kubelet's own figures, read now as the cluster admin: the pod's cumulative CPU
    # time is at least what the hub recorded earlier
    summary = lab.node.get(f"/api/v1/nodes/{spec['spec']['nodeName']}/proxy/stats/summary")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "kubelet-summary.json").write_text(json.dumps(summary, indent=1))
    (now,) = [p for p in summary["pods"] if p["podRef"]["name"] == f"jupyter-{name}"]
    assert now["podRef"]["namespace"] == ns
    assert now["cpu"]["usageCoreNanoSeconds"] / 1e9 >= sample["cpu_s"]

    # the admin stops the server: the stop carries the session's last figures
    admin_token = user_api_token(lab.public_url, ADMIN_USER, student["admin_password"])
    admin = HubAdmin(lab.public_url, admin_token)
    admin.stop_server(name, timeout=120)
    (stop,) = lab.node.wait_until(lambda: mine("stop"), timeout=60, what=f"{name}'s stop")
    assert stop["session"] == start["session"]
    assert stop["cpu_s"] > 1.0  # the notebook's kernel read and filled histograms
    assert stop["peak_rss"] > 50_000_000  # JupyterLab and a kernel, not a stray number
    logs = lab.node.kubectl("logs", "-n", ns, "deploy/hub", "--tail=-1").stdout
    assert "no usage figures from node" not in logs and "usage sampling failed" not in logs

    # the student joins the course by hand (as `make course-members` does; the site
    # file names no students), only for the report: their next start pulls nothing
    group = f"/groups/{course_group(LAB_COURSE)}"
    assert admin.api("POST", group).status_code in (201, 409)  # the hub made it at start
    members = f"{group}/users"
    joined = admin.api("POST", members, json={"users": [name]})
    assert joined.status_code == 200, joined.text
    try:
        check_the_report_and_the_endpoint(lab, student, admin_token, start, stop, tmp_path)
    finally:
        admin.api("DELETE", members, json={"users": [name]})


def check_the_report_and_the_endpoint(lab, student, admin_token, start, stop, out) -> None:
    name = student["name"]
    # the report on this machine with the admin's own token, as `make course-report`
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": admin_token}
    cmd = [sys.executable, "-m", "courses", "report", "--site", str(lab.site_file)]
    done = subprocess.run(
        [*cmd, "--course", LAB_COURSE, "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with (out / f"course-report-{LAB_COURSE}.csv").open() as f:
        row = {r["student"]: r for r in csv.DictReader(f)}[name]
    hours = (stop["t"] - start["t"]) / 3600
    assert float(row["server_hours"]) == pytest.approx(hours, abs=1e-4)
    assert (row["sessions"], row["running"]) == ("1", "no")
    assert row["cpu_seconds"] == f"{stop['cpu_s']:.1f}"
    assert int(row["peak_memory_bytes"]) == stop["peak_rss"]
    page = (out / f"course-report-{LAB_COURSE}.html").read_text()
    assert "not recorded on this site" not in page

    # the hub's usage endpoint refuses the student's own token
    usage = f"{lab.public_url}/hub/api/lakehub/usage"
    headers = {"Authorization": f"token {student['token']}"}
    refused = httpx.get(usage, params={"course": LAB_COURSE}, headers=headers, timeout=30)
    assert refused.status_code == 403 and f"{name} may not see" in refused.text


# --------------------------------------------------------------------------- lifecycle


def test_a_second_deploy_changes_nothing(lab, student):
    hub_before = hub_pod_uid(lab)
    done = run_make(lab, "deploy")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "==> no changes (Secrets are not compared)" in done.stderr
    assert hub_pod_uid(lab) == hub_before


def test_an_upgrade_keeps_the_students_home_and_the_hub_database(lab, student):
    name = student["name"]
    claim_path = f"/api/v1/namespaces/{lab.namespace}/persistentvolumeclaims/claim-{name}"
    claim_before = lab.node.get(claim_path)["metadata"]["uid"]
    hub_before = hub_pod_uid(lab)
    lab.write_site(name="lakehub on one node, renamed")
    done = run_make(lab, "deploy")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "renamed" in done.stderr  # the diff showed the change
    assert hub_pod_uid(lab) != hub_before  # the hub restarted with the new site file
    assert lab.node.get(claim_path)["metadata"]["uid"] == claim_before
    # the hub's database survived: the student's password and approval, their token
    login(lab.public_url, name, student["password"]).close()
    admin = HubAdmin(
        lab.public_url, user_api_token(lab.public_url, ADMIN_USER, student["admin_password"])
    )
    admin.stop_server(name, timeout=120)
    admin.start_server(name, timeout=240)
    kept = run(lab, student, "print(open('/home/jovyan/kept.txt').read())")
    assert kept.strip() == "written before the upgrade"


def test_undeploy_keeps_the_volumes_and_purge_removes_them(lab, student):
    name = student["name"]
    ns = lab.namespace
    claims = {f"claim-{name}", "hub-db-dir", "lakehub-cache"}

    def claims_left() -> set[str]:
        items = lab.node.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims")["items"]
        return {c["metadata"]["name"] for c in items} & claims

    done = run_make(lab, "undeploy")
    assert done.returncode == 0, done.stderr[-4000:]
    for name_ in SERVICES:
        assert lab.node.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name_}") is None
    assert pod(lab, f"jupyter-{name}") is None  # the student's server went with the hub
    secrets_left = lab.node.get(
        f"/api/v1/namespaces/{ns}/secrets?labelSelector=app.kubernetes.io%2Fpart-of%3Dlakehub"
    )["items"]
    assert secrets_left == []  # no session Secret (tokens) outlives the release
    assert claims_left() == claims

    done = run_make(lab, "undeploy", PURGE="1")
    assert done.returncode == 0, done.stderr[-4000:]
    lab.node.wait_until(lambda: not claims_left(), timeout=120, what="claims deleted")
    # the Secrets the sysadmin created stay
    for secret in ("lakehub-rucio-admin", "lakehub-issuer-key"):
        assert lab.node.get(f"/api/v1/namespaces/{ns}/secrets/{secret}") is not None
