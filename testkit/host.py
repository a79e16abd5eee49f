"""What a one-node cluster changes on the host, and how :mod:`testkit.node` undoes it.

A node run adds, outside its state folder: a bridge interface, iptables chains (KUBE-*
from kube-proxy and the kubelet; CNI-HOSTPORT-*/CNI-DN-* from the portmap plugin when a
pod has a hostPort), ``kubepods`` cgroups in every cgroup v1 hierarchy, CNI result files
under /var/lib/cni, links under /var/log/containers, shim sockets under
/run/containerd/s, and a few sysctls (the bridge plugin turns on ip_forward; the kubelet
sets vm.overcommit_memory, kernel.panic, ...).  Mounts (network namespaces, container
root file systems, Secret volumes) all lie under the state folder.

:func:`snapshot` records what to compare with before the first process starts;
:func:`clean` removes what the run added and restores the sysctls it changed;
:func:`leftovers` lists what is still there (empty after a clean stop).  Everything here
needs root, like the node itself.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from localstack.procs import process_table

CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"
# sysctls the kubelet or the CNI bridge plugin may change (restored if they did)
SYSCTLS = (
    "net.ipv4.ip_forward",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.conf.all.route_localnet",
)
# host folders a careless configuration would create; none may appear because of a run
HOST_DIRS = (
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/var/run/kubernetes",
    "/etc/kubernetes",
    "/etc/cni",
    "/opt/cni",
    "/opt/containerd",
    "/usr/libexec/kubernetes",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/run/containerd",
    "/run/netns",
    "/etc/nri",
)
# the kubelet's device-plugin socket has a fixed path (not under its --root-dir): when
# /var/lib/kubelet was not there before the run, this folder is the run's own
KUBELET_FIXED = Path("/var/lib/kubelet/device-plugins")
CNI_RESULTS = Path("/var/lib/cni/results")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
SHIM_SOCKETS = Path("/run/containerd/s")
# chains of ours: every KUBE-* chain; CNI-* chains of the portmap plugin that the run added
OWN_CNI_PREFIXES = ("CNI-HOSTPORT-", "CNI-DN-")


# --- sysctls ----------------------------------------------------------------------------


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        try:
            values[name] = _sysctl_path(name).read_text().strip()
        except OSError:
            continue
    return values


def restore_sysctls(before: dict[str, str]) -> list[str]:
    """Write back every recorded value that changed; returns the names restored."""
    restored = []
    for name, value in before.items():
        path = _sysctl_path(name)
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
                restored.append(name)
        except OSError:
            continue
    return restored


# --- iptables ---------------------------------------------------------------------------


def _families() -> list[str]:
    return [cmd for cmd in ("iptables", "ip6tables") if shutil.which(f"{cmd}-save")]


def _save(family: str) -> dict[str, tuple[list[str], list[str]]]:
    done = subprocess.run(
        [f"{family}-save"], capture_output=True, text=True, check=False, timeout=60
    )
    return parse_save(done.stdout)


def parse_save(out: str) -> dict[str, tuple[list[str], list[str]]]:
    """table -> (chain names, ``-A`` rule lines) from ``iptables-save`` output."""
    tables: dict[str, tuple[list[str], list[str]]] = {}
    chains: list[str] = []
    rules: list[str] = []
    for line in out.splitlines():
        if line.startswith("*"):
            chains, rules = [], []
            tables[line[1:]] = (chains, rules)
        elif line.startswith(":"):
            chains.append(line[1:].split()[0])
        elif line.startswith("-A "):
            rules.append(line)
    return tables


def iptables_chains() -> dict[str, dict[str, list[str]]]:
    """family -> table -> chain names."""
    return {f: {t: c for t, (c, _) in _save(f).items()} for f in _families()}


def _own_chains(table: str, chains: list[str], before: dict[str, list[str]]) -> list[str]:
    existed = set(before.get(table, []))
    return [
        c
        for c in chains
        if c.startswith("KUBE-") or (c.startswith(OWN_CNI_PREFIXES) and c not in existed)
    ]


def removal_script(
    saved: dict[str, tuple[list[str], list[str]]], before: dict[str, list[str]]
) -> str:
    """The ``iptables-restore --noflush`` input that deletes our chains (see
    :func:`_own_chains`) and every rule of another chain that jumps to one of them;
    ``saved`` is one family's ``iptables-save`` parsed by :func:`parse_save`."""
    script = []
    for table, (chains, rules) in saved.items():
        own = set(_own_chains(table, chains, before))
        if not own:
            continue
        script.append(f"*{table}")
        for rule in rules:
            words = shlex.split(rule)
            if words[1] not in own and _target(words) in own:
                script.append("-D " + rule[3:])
        script += [f"-F {c}" for c in sorted(own)]
        script += [f"-X {c}" for c in sorted(own)]
        script.append("COMMIT")
    return "".join(line + "\n" for line in script)


def clean_iptables(before: dict[str, dict[str, list[str]]]) -> list[str]:
    """Remove our chains and the rules jumping to them (one iptables-restore per family)."""
    errors = []
    for family in _families():
        script = removal_script(_save(family), before.get(family, {}))
        if not script:
            continue
        done = subprocess.run(
            [f"{family}-restore", "--noflush"],
            input=script,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if done.returncode != 0:
            errors.append(f"{family}-restore: {done.stderr.strip()}")
    return errors


def _target(words: list[str]) -> str | None:
    for flag in ("-j", "-g"):
        if flag in words[:-1]:
            return words[words.index(flag) + 1]
    return None


# --- cgroups ----------------------------------------------------------------------------


def kubepods_cgroups() -> list[Path]:
    """The top ``kubepods`` folder in each mounted cgroup hierarchy that has one."""
    if not CGROUP_ROOT.is_dir():
        return []
    return sorted(p for p in CGROUP_ROOT.glob(f"*/{KUBEPODS}") if p.is_dir())


def clean_cgroups(timeout: float = 10.0) -> list[str]:
    """Kill what is left in the kubepods cgroups (pod processes of this node), then
    remove the folders bottom-up."""
    tops = kubepods_cgroups()
    for top in tops:
        for folder in _bottom_up(top):
            for pid in _procs(folder):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    errors = []
    deadline = time.monotonic() + timeout
    for top in tops:
        for folder in _bottom_up(top):
            while True:
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:  # EBUSY while killed processes are still exiting
                    if time.monotonic() > deadline:
                        errors.append(f"{folder}: {e}")
                        break
                    time.sleep(0.1)
    return errors


def _bottom_up(top: Path) -> list[Path]:
    found = [Path(root) for root, _dirs, _files in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _procs(folder: Path) -> list[int]:
    try:
        return [int(p) for p in (folder / "cgroup.procs").read_text().split()]
    except OSError:
        return []


# --- mounts -----------------------------------------------------------------------------


def mounts_under(*folders: Path) -> list[Path]:
    """Mount points at or below any of ``folders`` (from /proc/self/mountinfo)."""
    prefixes = [str(f.resolve()) for f in folders]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append(Path(point))
    return found


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")).replace(
        "\\134", "\\"
    )


def unmount_under(*folders: Path) -> list[str]:
    """Unmount everything below ``folders``, deepest first (lazily if busy)."""
    errors = []
    for _ in range(3):  # stacked mounts show up again once the top one is gone
        points = sorted(set(mounts_under(*folders)), key=lambda p: len(p.parts), reverse=True)
        if not points:
            return []
        for point in points:
            done = subprocess.run(["umount", str(point)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
    errors += [f"still mounted: {p}" for p in mounts_under(*folders)]
    return errors


# --- network, files, processes ------------------------------------------------------------


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def delete_link(name: str) -> list[str]:
    if not link_exists(name):
        return []
    done = subprocess.run(
        ["ip", "link", "delete", name], capture_output=True, text=True, check=False
    )
    return [] if done.returncode == 0 else [f"ip link delete {name}: {done.stderr.strip()}"]


def links_on(bridge: str) -> list[str]:
    """Interfaces enslaved to ``bridge`` (the pods' veth ends)."""
    folder = Path("/sys/class/net", bridge, "brif")
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def clean_files(network: str, pod_logs: Path) -> None:
    """CNI result files of our network and kubelet's log links into our pod-log folder."""
    if CNI_RESULTS.is_dir():
        for path in CNI_RESULTS.glob(f"{network}-*"):
            path.unlink(missing_ok=True)
    if CONTAINER_LOG_LINKS.is_dir():
        for link in CONTAINER_LOG_LINKS.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(str(pod_logs)):
                link.unlink(missing_ok=True)


def empty_but_logs(folder: Path) -> None:
    """Remove everything in ``folder`` except its ``logs/`` (a missing folder is fine)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name == "logs":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def existing_host_dirs() -> list[str]:
    return [d for d in HOST_DIRS if os.path.lexists(d)]


def remove_new_empty_dirs(existed_before: list[str]) -> None:
    """Remove host folders the run created, bottom-up, as long as they are empty (and
    the kubelet's device-plugin folder if the run created /var/lib/kubelet)."""
    if "/var/lib/kubelet" not in existed_before:
        shutil.rmtree(KUBELET_FIXED, ignore_errors=True)
    for d in sorted(HOST_DIRS, key=len, reverse=True):
        if d in existed_before or not os.path.isdir(d):
            continue
        for root, _dirs, _files in sorted(os.walk(d), key=lambda w: len(w[0]), reverse=True):
            try:
                os.rmdir(root)
            except OSError:
                pass


def processes_of(needle: str, executables: set[str]) -> list[int]:
    """Live PIDs running one of ``executables`` with ``needle`` (a path unique to one run,
    such as its state folder) in their command line."""
    return [
        pid
        for pid, cmdline, _, exe in process_table()
        if exe in executables and needle in cmdline and not _zombie(pid)
    ]


def pod_processes() -> list[int]:
    return [pid for top in kubepods_cgroups() for f in _bottom_up(top) for pid in _procs(f)]


def kill(pids: list[int], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL what is still there after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
            if not pids:
                return
            time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


# --- the whole picture ------------------------------------------------------------------


def snapshot() -> dict:
    """What the host looks like before a run (stored in the run's node.json)."""
    return {
        "sysctls": read_sysctls(),
        "iptables": iptables_chains(),
        "host_dirs": existing_host_dirs(),
    }


def leftovers(before: dict, *, state: Path, bridge: str, executables: set[str]) -> list[str]:
    """What of a run is still on the host (processes, bridge, chains, cgroups, mounts,
    folders); empty after a clean stop."""
    found = []
    found += [f"process {pid}" for pid in processes_of(str(state), executables)]
    found += [f"pod process {pid}" for pid in pod_processes()]
    if link_exists(bridge):
        found.append(f"interface {bridge}")
    for family, tables in iptables_chains().items():
        for table, chains in tables.items():
            own = _own_chains(table, chains, before.get("iptables", {}).get(family, {}))
            found += [f"{family} -t {table} chain {c}" for c in own]
    found += [f"cgroup {p}" for p in kubepods_cgroups()]
    found += [f"mount {p}" for p in mounts_under(state)]
    existed = set(before.get("host_dirs", []))
    found += [f"folder {d}" for d in existing_host_dirs() if d not in existed]
    return found
