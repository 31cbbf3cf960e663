"""The stand-in API server's credentials: a self-signed CA, a serving certificate and bearer tokens.

Files in /run/podpath/labs/<lab>/apiserver/ (root only): ca.crt, server.crt, server.key,
tokens.json ({"admin": TOKEN, "limited": TOKEN, ...}, one per USERS name). Made once per `lab up` of a
lab that has none; a reconcile keeps them (adding a token for a user it lacks), so kubeconfigs
handed out stay valid.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..topology import CONTROL_PLANE_IP

SERVER_DNS = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
# Users: token name -> (user name, groups). admin is cluster-admin; the others get what rbac.RULES
# grants them: limited reads a few resources; agent and coordinator are the two ServiceAccounts of
# issue 10's DaemonSet (deploy/ binds the same rules).
_SA_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:podpath", "system:authenticated"]
USERS = {"admin": ("kubernetes-admin", ["system:masters", "system:authenticated"]),
         "limited": ("podpath-limited", ["system:authenticated"]),
         "agent": ("system:serviceaccount:podpath:podpath-agent", _SA_GROUPS),
         "coordinator": ("system:serviceaccount:podpath:podpath-coordinator", _SA_GROUPS)}


def paths(d: Path) -> dict[str, Path]:
    return {k: d / f for k, f in (("ca", "ca.crt"), ("cert", "server.crt"), ("key", "server.key"),
                                  ("tokens", "tokens.json"))}


def present(d: Path) -> bool:
    return all(p.exists() for p in paths(d).values())


def missing_tokens(d: Path) -> list[str]:
    """Users a lab made before they existed has no token for."""
    return [name for name in USERS if name not in tokens(d)]


def add_tokens(d: Path) -> None:
    """A token for every user that lacks one; the others (and kubeconfigs holding them) stay valid."""
    have = tokens(d)
    _write_private(paths(d)["tokens"], json.dumps(have | {name: secrets.token_urlsafe(32) for name in USERS
                                                         if name not in have}).encode())


def make(d: Path, cluster: str) -> None:
    """Write a fresh CA, a serving certificate for 192.168.56.10 / kubernetes.default.svc, tokens."""
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"podpath-lab-{cluster}-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName(n) for n in SERVER_DNS]
                                      + [x509.IPAddress(ipaddress.ip_address(CONTROL_PLANE_IP)),
                                         x509.IPAddress(ipaddress.ip_address("10.96.0.1"))])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(san, critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    p = paths(d)
    p["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    p["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(p["key"], key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    _write_private(p["tokens"], json.dumps({name: secrets.token_urlsafe(32) for name in USERS}).encode())


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def tokens(d: Path) -> dict[str, str]:
    return json.loads(paths(d)["tokens"].read_text())
