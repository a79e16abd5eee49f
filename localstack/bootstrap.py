"""Fill the embedded Rucio with the demo data, idempotently.

* a DISK RSE (``LAKEHUB_DEMO``) whose files live under ``<state>/rse/demo`` and are
  read through Rucio's POSIX protocol, with the ``identity`` lfn2pfn layout
  (``<prefix>/<scope>/<name>``) so the files sit where a person expects them;
* the scope (``opendata``) and the dataset (``opendata:demo.GamGam``);
* the generated ROOT files registered as replicas with size, adler32 and md5.

A second run changes nothing and takes about a second.
"""

from __future__ import annotations

import hashlib
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

from localstack import rucio_server
from sitefile import DemoData, RucioInstance
from sitefile.state import StackPaths


class DemoDataChanged(RuntimeError):
    pass


@dataclass(frozen=True)
class FileFacts:
    name: str
    bytes: int
    adler32: str
    md5: str


def checksums(path: Path) -> FileFacts:
    adler, md5, size = 1, hashlib.md5(usedforsecurity=False), 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            adler = zlib.adler32(chunk, adler)
            md5.update(chunk)
            size += len(chunk)
    return FileFacts(path.name, size, f"{adler & 0xFFFFFFFF:08x}", md5.hexdigest())


def admin_client(instance: RucioInstance, paths: StackPaths):
    from rucio.client import Client

    return Client(
        rucio_host=instance.rucio_host,
        auth_host=instance.auth_url,
        account="root",
        auth_type="userpass",
        creds={
            "username": rucio_server.ROOT_USERNAME,
            "password": paths.rucio_root_password.read_text().strip(),
        },
        vo=instance.vo,
    )


def ensure_rse(client, rse: str, prefix: Path) -> None:
    from rucio.common.exception import Duplicate, RSENotFound

    try:
        client.get_rse(rse)
        return
    except RSENotFound:
        pass
    try:
        client.add_rse(rse, deterministic=True, rse_type="DISK")
    except Duplicate:
        return
    client.add_rse_attribute(rse, "lfn2pfn_algorithm", "identity")
    client.add_protocol(
        rse,
        {
            "scheme": "file",
            "hostname": "localhost",
            "port": 0,
            "prefix": str(prefix) + "/",
            "impl": "rucio.rse.protocols.posix.Default",
            "domains": {
                "lan": {"read": 1, "write": 1, "delete": 1},
                "wan": {
                    "read": 1,
                    "write": 1,
                    "delete": 1,
                    "third_party_copy_read": 1,
                    "third_party_copy_write": 1,
                },
            },
        },
    )


def ensure_http_protocol(client, rse: str, host: str, port: int) -> None:
    """Let the RSE's files be read over plain HTTP from host:port too (the one-node
    cluster's pods cannot open the host's folders): a second, lower-priority protocol
    whose paths mirror the POSIX prefix's layout (scope/name)."""
    from rucio.common.exception import Duplicate

    try:
        client.add_protocol(
            rse,
            {
                "scheme": "http",
                "hostname": host,
                "port": port,
                "prefix": "/",
                "impl": "rucio.rse.protocols.webdav.Default",
                "domains": {
                    "lan": {"read": 2, "write": 0, "delete": 0},
                    "wan": {"read": 2, "write": 0, "delete": 0},
                },
            },
        )
    except Duplicate:
        pass


def ensure_cache_rse(instance: RucioInstance, paths: StackPaths, rse: str, root: Path) -> None:
    """The RSE of the shared cache: its files are the cache folder's (written by the
    cache service only, read by everybody)."""
    root.mkdir(parents=True, exist_ok=True)
    ensure_rse(admin_client(instance, paths), rse, root)


def ensure_demo_datasets(
    instance: RucioInstance, paths: StackPaths, demo: DemoData, progress: bool = True
) -> dict[str, list[FileFacts]]:
    """Make every demo dataset (one per layout) exist in Rucio with its files on the
    demo RSE; returns the files per dataset DID."""
    from rucio.common.exception import Duplicate

    prefix = paths.rse / "demo"
    client = admin_client(instance, paths)
    ensure_rse(client, demo.rse, prefix)
    try:
        client.add_scope("root", demo.scope)
    except Duplicate:
        pass
    scope_dir = prefix / demo.scope
    scope_dir.mkdir(parents=True, exist_ok=True)
    done = {}
    for layout in demo.layouts:
        name = demo.dataset_name(layout)
        done[f"{demo.scope}:{name}"] = _ensure_one(client, paths, demo, layout, name, progress)
    # world-readable data folder: students' own accounts read it through Rucio's POSIX protocol
    for folder in (paths.rse, prefix, scope_dir):
        folder.chmod(0o755)
    return done


def _ensure_one(
    client, paths: StackPaths, demo: DemoData, layout: str, dataset: str, progress: bool
) -> list[FileFacts]:
    from rucio.common.exception import DataIdentifierAlreadyExists

    from localstack.demo_data import generate_dataset

    generated = generate_dataset(
        paths.demo_staging,
        n_files=demo.files,
        n_events=demo.events,
        seed=demo.seed,
        progress=progress,
        layout=layout,
    )
    scope_dir = paths.rse / "demo" / demo.scope
    known = {
        r["name"]: r
        for r in client.list_replicas([{"scope": demo.scope, "name": g.name} for g in generated])
    }
    facts, missing = [], []
    for src in generated:
        dest = scope_dir / src.name
        registered = known.get(src.name)
        if registered:
            # the registered replica is the truth: keep it while its bytes still match
            have = checksums(dest) if dest.exists() else None
            if have is None or have.adler32 != registered["adler32"]:
                raise DemoDataChanged(
                    f"{dest} no longer matches what Rucio holds for {demo.scope}:{src.name};"
                    " run `make clean` to start afresh"
                )
            facts.append(have)
            continue
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(src, tmp)
        tmp.chmod(0o644)
        tmp.replace(dest)
        facts.append(checksums(dest))
        missing.append(facts[-1])
    if missing:
        client.add_replicas(
            demo.rse,
            [
                {
                    "scope": demo.scope,
                    "name": f.name,
                    "bytes": f.bytes,
                    "adler32": f.adler32,
                    "md5": f.md5,
                }
                for f in missing
            ],
        )
    try:
        client.add_dataset(demo.scope, dataset)
    except DataIdentifierAlreadyExists:
        pass
    attached = {d["name"] for d in client.list_content(demo.scope, dataset)}
    to_attach = [{"scope": demo.scope, "name": f.name} for f in facts if f.name not in attached]
    if to_attach:
        client.attach_dids(demo.scope, dataset, to_attach)
    return facts
