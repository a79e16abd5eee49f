"""Certificates and kubeconfigs of the one-node test cluster (:mod:`testkit.node`).

One certificate authority signs everything: the apiserver's and the kubelet's serving
certificates and one client certificate per component.  The service accounts get an
RSA key pair of their own.  Every file is written mode 0600 through a temp file and a
rename; nothing here is logged.

:func:`issue` writes the whole set into a folder and returns :class:`Pki`, the paths;
:func:`kubeconfig` is the pure builder of a kubeconfig document that embeds a client
certificate.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lakehub.files import atomic_write

VALID_DAYS = 30

# file stem -> (common name, organisation or None); the groups give the component its
# RBAC (built-in bindings of Kubernetes: system:masters is cluster-admin; system:nodes
# with the Node authorizer; system:kube-proxy, -controller-manager, -scheduler have
# their own ClusterRoleBindings)
CLIENTS: dict[str, tuple[str, str | None]] = {
    "admin": ("lakehub-admin", "system:masters"),
    "kube-proxy": ("system:kube-proxy", None),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    # the apiserver's identity towards the kubelet (logs, exec): an admin of the kubelet API
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
}


@dataclass(frozen=True)
class Pki:
    folder: Path

    def cert(self, stem: str) -> Path:
        return self.folder / f"{stem}.crt"

    def key(self, stem: str) -> Path:
        return self.folder / f"{stem}.key"

    @property
    def ca(self) -> Path:
        return self.cert("ca")

    @property
    def sa_private(self) -> Path:
        return self.folder / "sa.key"

    @property
    def sa_public(self) -> Path:
        return self.folder / "sa.pub"


def issue(folder: Path, *, node_name: str, node_ip: str, service_ip: str) -> Pki:
    """Write the CA, serving and client certificates and the service-account keys."""
    pki = Pki(folder)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str, org: str | None = None) -> x509.Name:
        parts = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            parts.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(parts)

    def builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("lakehub-test-cluster-ca")
    ca = (
        builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(pki.key("ca"), ca_key)
    _write_cert(pki.ca, ca)

    def leaf(stem: str, subject: x509.Name, usage, sans: list | None = None) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = builder(subject, ca_name, key.public_key()).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if sans:
            cert = cert.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        _write_key(pki.key(stem), key)
        _write_cert(pki.cert(stem), cert.sign(ca_key, hashes.SHA256()))

    def ips(*addresses: str) -> list:
        return [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(addresses)]

    server = ExtendedKeyUsageOID.SERVER_AUTH
    client = ExtendedKeyUsageOID.CLIENT_AUTH
    api_names = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    leaf(
        "apiserver",
        name("kube-apiserver"),
        server,
        ips("127.0.0.1", node_ip, service_ip) + [x509.DNSName(n) for n in api_names],
    )
    leaf(
        "kubelet-serving",
        name(f"system:node:{node_name}", "system:nodes"),
        server,
        ips("127.0.0.1", node_ip) + [x509.DNSName(node_name)],
    )
    leaf("kubelet", name(f"system:node:{node_name}", "system:nodes"), client)
    for stem, (cn, org) in CLIENTS.items():
        leaf(stem, name(cn, org), client)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki.sa_private, sa_key)
    atomic_write(
        pki.sa_public,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        mode=0o600,
    )
    return pki


def kubeconfig(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str) -> dict:
    """A kubeconfig with one cluster, one user (client certificate) and one context."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lakehub-test",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
            }
        ],
        "contexts": [
            {"name": "lakehub-test", "context": {"cluster": "lakehub-test", "user": user}}
        ],
        "current-context": "lakehub-test",
    }


def _write_key(path: Path, key) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write(path, pem, mode=0o600)


def _write_cert(path: Path, cert) -> None:
    atomic_write(path, cert.public_bytes(serialization.Encoding.PEM), mode=0o600)
