"""The development PKI: generated at run time into a data directory, never committed.

Everything is ECDSA P-256 (the ECASD key may also be brainpoolP256r1). :meth:`DevPki.generate` writes::

    <directory>/
      pki.json                         manifest: format version and the entity OIDs (written last)
      ci.pem        ci.key.pem         CI root, X.509, self-signed, CA
      eum.pem       eum.key.pem        EUM, X.509, signed by the CI, CA pathlen 0, CN "EUM <eum_oid>"
      smdp.gp.hex   smdp.key.pem       CERT.DP.ECDSA, GP '7F21' (hex text), cert type 01, signed by the CI key
      smsr.gp.hex   smsr.key.pem       CERT.SR.ECDSA, GP '7F21' (hex text), cert type 02, signed by the CI key
      tls-ca.pem    tls-ca.key.pem     TLS CA (separate from the CI)
      tls-server.pem tls-server.key.pem  CN localhost, SAN DNS:localhost + IP:127.0.0.1, serverAuth
      tls-client-<oid>.pem/.key.pem    one per entity OID, CN = the OID, clientAuth

Keys are unencrypted PKCS#8 PEM with mode 0600; the directory is 0700. Generation holds an exclusive ``flock`` on
``<directory>/.lock`` so that several workers starting together generate once and the others load.

A second SM-SR in the same lab (``esx init --peer-of``) gets a *peer* directory from :meth:`DevPki.issue_peer_smsr`:
never a second CI (the simulated cards trust the one CI), and no copy of anyone else's private key::

    <peer directory>/
      pki.json                         as above, plus "issued_by" (the issuing directory) and "tls_clients"
      ci.pem  eum.pem  smdp.gp.hex     copies of the issuer's certificates (no .key.pem beside them)
      tls-ca.pem                       copy of the issuer's TLS CA certificate (no key)
      smsr.gp.hex   smsr.key.pem       the peer's own CERT.SR.ECDSA, signed by the issuer's CI key
      tls-server.pem tls-server.key.pem  its own, by the issuer's TLS CA
      tls-client-<peer oid>.pem/.key.pem  its own, by the issuer's TLS CA

Loaded, such a directory has ``ci_key``, ``eum_key`` and ``smdp_key`` None and one TLS client (the peer's); the OIDs
of the SM-DP, EUM and MNO are the issuer's.

Identifier choices (ours; SGP.02 Tables 23/77/78 not checked): in GP certificates '42' (CA id) and 'C9' (AKI) are
the issuer's X.509 SubjectKeyIdentifier, '5F20' (subject id) is the EID bytes for an ECASD and the ASCII of the
entity OID for the SM-DP / SM-SR, '93' is 8 random bytes.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keys.gp_cert import (
    CERT_TYPE_SMDP,
    CERT_TYPE_SMSR,
    KEY_AGREEMENT,
    SIGNATURE_VERIFICATION,
    build_gp_certificate,
)

__all__ = [
    "DevPki",
    "new_key",
    "private_key_pem",
    "load_private_key",
    "certificate_pem",
    "make_ci",
    "make_eum",
    "make_gp_cert_by_ci",
    "make_ecasd",
    "make_tls_ca",
    "make_tls_server",
    "make_tls_client",
]

MANIFEST_FORMAT = 1
_OID = re.compile(r"([0-9]+\.)*[0-9]+")  # the OID simple type of the SGP.02 XSD (sgp02-wire.md §5.1)
DEVELOPMENT_ORGANISATION = "esx development PKI"  # every certificate it makes names it (keys.test_credentials)

_CURVES: dict[str, type[ec.EllipticCurve]] = {"P-256": ec.SECP256R1, "brainpoolP256r1": ec.BrainpoolP256R1}

# Validity periods, from generation time.
_CI_LIFETIME = datetime.timedelta(days=30 * 365)
_EUM_LIFETIME = datetime.timedelta(days=20 * 365)
_TLS_CA_LIFETIME = datetime.timedelta(days=20 * 365)
_TLS_LEAF_LIFETIME = datetime.timedelta(days=5 * 365)
_GP_LIFETIME = datetime.timedelta(days=3652)  # ten years, for the GP certificates
_BACKDATE = datetime.timedelta(hours=1)  # not_before slack for clock skew between hosts


# --- keys ------------------------------------------------------------------------------------------------------


def new_key(curve: str = "P-256") -> ec.EllipticCurvePrivateKey:
    try:
        return ec.generate_private_key(_CURVES[curve]())
    except KeyError:
        raise ValueError(f"unsupported curve {curve!r}; use one of {sorted(_CURVES)}") from None


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("expected an EC private key")
    return key


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEVELOPMENT_ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _subject_key_id(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def _check_oid(oid: str) -> str:
    if not _OID.fullmatch(oid):
        raise ValueError(f"{oid!r} is not a dotted OID")
    return oid


# --- X.509 -----------------------------------------------------------------------------------------------------


def _key_usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _x509(
    *,
    subject: x509.Name,
    subject_key: ec.EllipticCurvePublicKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    ca: bool,
    path_length: int | None = None,
    key_usage: x509.KeyUsage,
    extended_usage: list[x509.ObjectIdentifier] | None = None,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    """One X.509 v3 certificate, ECDSA-SHA256; ``issuer=None`` makes it self-signed."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(subject_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    if extended_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended_usage), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_ci(
    *,
    common_name: str = "esx dev CI",
    key: ec.EllipticCurvePrivateKey | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CI root. Call it again for an unrelated CI in negative tests."""
    key = key or new_key()
    now = _now()
    cert = _x509(
        subject=_name(common_name),
        subject_key=key.public_key(),
        issuer=None,
        issuer_key=key,
        not_before=not_before or now - _BACKDATE,
        not_after=not_after or now + _CI_LIFETIME,
        ca=True,
        key_usage=_key_usage(cert_sign=True),
    )
    return key, cert


def make_eum(
    ci_key: ec.EllipticCurvePrivateKey,
    ci_cert: x509.Certificate,
    eum_oid: str,
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """An EUM certificate issued by the CI: CA with pathlen 0 (it signs ECASD certificates) and digitalSignature
    (it signs the EIS, ES1 ``EumSignature``)."""
    key = key or new_key()
    now = _now()
    cert = _x509(
        subject=_name(f"EUM {_check_oid(eum_oid)}"),
        subject_key=key.public_key(),
        issuer=ci_cert,
        issuer_key=ci_key,
        not_before=not_before or now - _BACKDATE,
        not_after=not_after or now + _EUM_LIFETIME,
        ca=True,
        path_length=0,
        key_usage=_key_usage(digital_signature=True, cert_sign=True),
    )
    return key, cert


def make_tls_ca(*, common_name: str = "esx dev TLS CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = new_key()
    now = _now()
    cert = _x509(
        subject=_name(common_name),
        subject_key=key.public_key(),
        issuer=None,
        issuer_key=key,
        not_before=now - _BACKDATE,
        not_after=now + _TLS_CA_LIFETIME,
        ca=True,
        path_length=0,
        key_usage=_key_usage(cert_sign=True),
    )
    return key, cert


def make_tls_server(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    dns_names: tuple[str, ...] = ("localhost",),
    ip_addresses: tuple[str, ...] = ("127.0.0.1",),
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = new_key()
    now = _now()
    san: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    san += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    cert = _x509(
        subject=_name(dns_names[0] if dns_names else ip_addresses[0]),
        subject_key=key.public_key(),
        issuer=ca_cert,
        issuer_key=ca_key,
        not_before=now - _BACKDATE,
        not_after=now + _TLS_LEAF_LIFETIME,
        ca=False,
        key_usage=_key_usage(digital_signature=True),
        extended_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        san=san,
    )
    return key, cert


def make_tls_client(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, oid: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A TLS client certificate whose CN is the entity OID (the identity the SOAP layer authorises)."""
    key = new_key()
    now = _now()
    cert = _x509(
        subject=_name(_check_oid(oid)),
        subject_key=key.public_key(),
        issuer=ca_cert,
        issuer_key=ca_key,
        not_before=now - _BACKDATE,
        not_after=now + _TLS_LEAF_LIFETIME,
        ca=False,
        key_usage=_key_usage(digital_signature=True),
        extended_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    return key, cert


# --- GP certificates -------------------------------------------------------------------------------------------


def _ten_years() -> datetime.date:
    return (_now() + _GP_LIFETIME).date()


def make_gp_cert_by_ci(
    ci_key: ec.EllipticCurvePrivateKey,
    ci_cert: x509.Certificate,
    *,
    oid: str,
    cert_type: int,
    key: ec.EllipticCurvePrivateKey | None = None,
    expiry: datetime.date | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """CERT.DP.ECDSA (``cert_type=CERT_TYPE_SMDP``) or CERT.SR.ECDSA (``CERT_TYPE_SMSR``), signed by the CI key."""
    key = key or new_key()
    ci_ski = _subject_key_id(ci_cert)
    cert = build_gp_certificate(
        serial=os.urandom(8),
        ca_id=ci_ski,
        subject_id=_check_oid(oid).encode("ascii"),
        key_usage=SIGNATURE_VERIFICATION,
        expiry=expiry or _ten_years(),
        public_key=key.public_key(),
        signer=ci_key,
        cert_type=cert_type,
        authority_key_id=ci_ski,
    )
    return key, cert


def make_ecasd(
    eum_key: ec.EllipticCurvePrivateKey,
    eum_cert: x509.Certificate,
    eid: str,
    *,
    curve: str = "P-256",
    expiry: datetime.date | None = None,
    effective: datetime.date | None = None,
    key_usage: bytes = KEY_AGREEMENT,
) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """SK.ECASD.ECKA and CERT.ECASD.ECKA for ``eid`` (hex), signed by the EUM key."""
    try:
        eid_bytes = bytes.fromhex(eid)
    except ValueError:
        raise ValueError(f"EID {eid!r} is not hex") from None
    if not 1 <= len(eid_bytes) <= 32:  # hexBinary of at most 32 bytes in the XSD; 16 in practice
        raise ValueError("EID must be 1..32 bytes")
    key = new_key(curve)
    eum_ski = _subject_key_id(eum_cert)
    cert = build_gp_certificate(
        serial=os.urandom(8),
        ca_id=eum_ski,
        subject_id=eid_bytes,
        key_usage=key_usage,
        expiry=expiry or _ten_years(),
        effective=effective,
        public_key=key.public_key(),
        signer=eum_key,
        authority_key_id=eum_ski,
    )
    return key, cert


# --- files -----------------------------------------------------------------------------------------------------


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    """Write atomically (temporary file + rename); secrets are created 0600 and never exist with wider modes."""
    tmp = path.with_name(f".{path.name}.tmp")
    mode = 0o600 if secret else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / ".lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _client_stem(oid: str) -> str:
    return f"tls-client-{oid}"


# --- the PKI ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DevPki:
    directory: Path
    smdp_oid: str
    smsr_oid: str
    eum_oid: str
    mno_oid: str
    ci_cert_pem: bytes
    ci_key: ec.EllipticCurvePrivateKey | None  # None in a peer SM-SR's directory (module doc), as the next two
    eum_cert_pem: bytes
    eum_key: ec.EllipticCurvePrivateKey | None
    smdp_gp_cert: bytes
    smdp_key: ec.EllipticCurvePrivateKey | None
    smsr_gp_cert: bytes
    smsr_key: ec.EllipticCurvePrivateKey
    tls_ca_path: Path
    tls_server_cert_path: Path
    tls_server_key_path: Path
    _tls_clients: dict[str, tuple[Path, Path]] = field(repr=False)
    issued_by: Path | None = None  # a peer SM-SR's directory: the directory whose CI and TLS CA issued it

    # -- creation -------------------------------------------------------------------------------------------

    @classmethod
    def generate(cls, directory: Path, *, smdp_oid: str, smsr_oid: str, eum_oid: str, mno_oid: str) -> DevPki:
        """Generate the PKI into ``directory``, or load it if it is already there (then the OIDs must match)."""
        directory = Path(directory)
        oids = {"smdp_oid": smdp_oid, "smsr_oid": smsr_oid, "eum_oid": eum_oid, "mno_oid": mno_oid}
        for oid in oids.values():
            _check_oid(oid)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        with _locked(directory):
            if (directory / "pki.json").exists():
                pki = cls.load(directory)
                found = {name: getattr(pki, name) for name in oids}
                if found != oids:
                    raise ValueError(f"{directory} holds a PKI for {found}, not {oids}")
                return pki
            cls._write_new(directory, **oids)
        return cls.load(directory)

    @staticmethod
    def _write_new(directory: Path, *, smdp_oid: str, smsr_oid: str, eum_oid: str, mno_oid: str) -> None:
        def save(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate | bytes) -> None:
            if isinstance(cert, bytes):
                _write(directory / f"{stem}.gp.hex", cert.hex().upper().encode("ascii") + b"\n")
            else:
                _write(directory / f"{stem}.pem", certificate_pem(cert))
            _write(directory / f"{stem}.key.pem", private_key_pem(key), secret=True)

        ci_key, ci_cert = make_ci()
        save("ci", ci_key, ci_cert)
        save("eum", *make_eum(ci_key, ci_cert, eum_oid))
        save("smdp", *make_gp_cert_by_ci(ci_key, ci_cert, oid=smdp_oid, cert_type=CERT_TYPE_SMDP))
        save("smsr", *make_gp_cert_by_ci(ci_key, ci_cert, oid=smsr_oid, cert_type=CERT_TYPE_SMSR))
        tls_key, tls_cert = make_tls_ca()
        save("tls-ca", tls_key, tls_cert)
        save("tls-server", *make_tls_server(tls_key, tls_cert))
        for oid in dict.fromkeys((smdp_oid, smsr_oid, eum_oid, mno_oid)):
            save(_client_stem(oid), *make_tls_client(tls_key, tls_cert, oid))
        manifest = {
            "format": MANIFEST_FORMAT,
            "smdp_oid": smdp_oid,
            "smsr_oid": smsr_oid,
            "eum_oid": eum_oid,
            "mno_oid": mno_oid,
        }
        # Written last: its presence means the directory is complete.
        _write(directory / "pki.json", json.dumps(manifest, indent=2).encode() + b"\n")

    @classmethod
    def load(cls, directory: Path) -> DevPki:
        directory = Path(directory)
        manifest = json.loads((directory / "pki.json").read_text())
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{directory}/pki.json: unsupported format {manifest.get('format')!r}")

        def key(stem: str) -> ec.EllipticCurvePrivateKey:
            return load_private_key((directory / f"{stem}.key.pem").read_bytes())

        def gp(stem: str) -> bytes:
            return bytes.fromhex((directory / f"{stem}.gp.hex").read_text().strip())

        issued_by = manifest.get("issued_by")

        def own_key(stem: str) -> ec.EllipticCurvePrivateKey | None:
            return None if issued_by else key(stem)  # a peer holds no CI, EUM or SM-DP key (module doc)

        oids = {name: manifest[name] for name in ("smdp_oid", "smsr_oid", "eum_oid", "mno_oid")}
        clients = {}
        for oid in dict.fromkeys(manifest.get("tls_clients") or oids.values()):
            stem = _client_stem(oid)
            clients[oid] = (directory / f"{stem}.pem", directory / f"{stem}.key.pem")
        for path in [p for pair in clients.values() for p in pair] + [directory / "tls-ca.pem"]:
            if not path.is_file():
                raise FileNotFoundError(path)
        return cls(
            directory=directory,
            **oids,
            ci_cert_pem=(directory / "ci.pem").read_bytes(),
            ci_key=own_key("ci"),
            eum_cert_pem=(directory / "eum.pem").read_bytes(),
            eum_key=own_key("eum"),
            smdp_gp_cert=gp("smdp"),
            smdp_key=own_key("smdp"),
            smsr_gp_cert=gp("smsr"),
            smsr_key=key("smsr"),
            tls_ca_path=directory / "tls-ca.pem",
            tls_server_cert_path=directory / "tls-server.pem",
            tls_server_key_path=directory / "tls-server.key.pem",
            _tls_clients=clients,
            issued_by=Path(issued_by) if issued_by else None,
        )

    def issue_peer_smsr(self, directory: Path, *, smsr_oid: str) -> DevPki:
        """Write a peer SM-SR's PKI into ``directory`` (module doc) and load it: its own CERT.SR.ECDSA for
        ``smsr_oid`` signed by this PKI's CI key, its own TLS server and client certificates by this PKI's TLS CA,
        copies of this PKI's CI, EUM, SM-DP and TLS CA certificates. A directory that already holds the peer PKI of
        ``smsr_oid`` under this CI is loaded as it is (a second call writes nothing); ValueError for one that holds
        another, for an OID this PKI already names, and when this PKI holds no CI key (it is itself a peer's)."""
        directory = Path(directory)
        _check_oid(smsr_oid)
        if smsr_oid in (self.smdp_oid, self.smsr_oid, self.eum_oid, self.mno_oid):
            raise ValueError(f"{smsr_oid} is already an entity of the PKI in {self.directory}")
        tls_ca_key_path = self.directory / "tls-ca.key.pem"
        if self.ci_key is None or not tls_ca_key_path.is_file():
            raise ValueError(f"{self.directory} holds no CI or TLS CA key (it is a peer SM-SR's PKI): issue the peer "
                             f"from the PKI that issued it{f' ({self.issued_by})' if self.issued_by else ''}")
        tls_ca_key = load_private_key(tls_ca_key_path.read_bytes())
        tls_ca_cert = x509.load_pem_x509_certificate(self.tls_ca_path.read_bytes())
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        with _locked(directory):
            if (directory / "pki.json").exists():
                peer = DevPki.load(directory)
                if peer.smsr_oid != smsr_oid or peer.ci_cert_pem != self.ci_cert_pem:
                    raise ValueError(f"{directory} holds the PKI of SM-SR {peer.smsr_oid}, not a peer {smsr_oid} "
                                     f"under the CI of {self.directory}")
                return peer
            _write(directory / "ci.pem", self.ci_cert_pem)
            _write(directory / "eum.pem", self.eum_cert_pem)
            _write(directory / "smdp.gp.hex", self.smdp_gp_cert.hex().upper().encode("ascii") + b"\n")
            _write(directory / "tls-ca.pem", self.tls_ca_path.read_bytes())
            key, gp_cert = self.issue_smsr(smsr_oid)
            _write(directory / "smsr.gp.hex", gp_cert.hex().upper().encode("ascii") + b"\n")
            _write(directory / "smsr.key.pem", private_key_pem(key), secret=True)
            for stem, (key, cert) in (("tls-server", make_tls_server(tls_ca_key, tls_ca_cert)),
                                      (_client_stem(smsr_oid), make_tls_client(tls_ca_key, tls_ca_cert, smsr_oid))):
                _write(directory / f"{stem}.pem", certificate_pem(cert))
                _write(directory / f"{stem}.key.pem", private_key_pem(key), secret=True)
            manifest = {
                "format": MANIFEST_FORMAT,
                "smdp_oid": self.smdp_oid,
                "smsr_oid": smsr_oid,
                "eum_oid": self.eum_oid,
                "mno_oid": self.mno_oid,
                "tls_clients": [smsr_oid],
                "issued_by": str(self.directory.resolve()),
            }
            _write(directory / "pki.json", json.dumps(manifest, indent=2).encode() + b"\n")  # last: complete
        return DevPki.load(directory)

    # -- accessors ------------------------------------------------------------------------------------------

    @property
    def ci_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ci_cert_pem)

    @property
    def eum_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.eum_cert_pem)

    @property
    def tls_client_oids(self) -> tuple[str, ...]:
        return tuple(self._tls_clients)

    def tls_client(self, oid: str) -> tuple[Path, Path]:
        """``(cert_path, key_path)`` of the TLS client certificate for entity ``oid``; KeyError if unknown."""
        try:
            return self._tls_clients[oid]
        except KeyError:
            raise KeyError(f"no TLS client certificate for {oid}; have {list(self._tls_clients)}") from None

    def _own(self, name: str, what: str) -> ec.EllipticCurvePrivateKey:
        key = getattr(self, name)
        if key is None:
            raise ValueError(f"{self.directory} holds no {what} key: it is a peer SM-SR's PKI, issued by {self.issued_by}")
        return key

    # -- issuing (not stored) -------------------------------------------------------------------------------

    def issue_ecasd(
        self,
        eid: str,
        curve: str = "P-256",
        *,
        expiry: datetime.date | None = None,
        effective: datetime.date | None = None,
        key_usage: bytes = KEY_AGREEMENT,
        eum_key: ec.EllipticCurvePrivateKey | None = None,
        eum_cert_pem: bytes | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        """SK.ECASD.ECKA and CERT.ECASD.ECKA for ``eid``, signed by this PKI's EUM (or the given one).

        The keyword arguments exist for negative tests: an expired certificate, a wrong key usage, another EUM.
        """
        if (eum_key is None) != (eum_cert_pem is None):
            raise ValueError("give both eum_key and eum_cert_pem, or neither")
        signer = eum_key or self._own("eum_key", "EUM")
        signer_cert = x509.load_pem_x509_certificate(eum_cert_pem) if eum_cert_pem else self.eum_cert
        return make_ecasd(
            signer, signer_cert, eid, curve=curve, expiry=expiry, effective=effective, key_usage=key_usage
        )

    def issue_smsr(
        self,
        smsr_oid: str,
        *,
        expiry: datetime.date | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        """SK.SR.ECDSA and CERT.SR.ECDSA (GP '7F21', certificate type 02) for another SM-SR, by this PKI's CI.

        A second SM-SR of the same lab (SM-SR change) gets its certificate here, so that the cards, which trust
        this CI, accept it in STORE DATA '3A01'. Not stored: the caller keeps the key and the certificate.
        """
        return make_gp_cert_by_ci(self._own("ci_key", "CI"), self.ci_cert, oid=smsr_oid, cert_type=CERT_TYPE_SMSR,
                                  key=key, expiry=expiry)

    def issue_eum(
        self,
        eum_oid: str | None = None,
        *,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        ci_key: ec.EllipticCurvePrivateKey | None = None,
        ci_cert_pem: bytes | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        """Another EUM certificate (PEM) and key, by this PKI's CI (or the given one, e.g. from :func:`make_ci`)."""
        if (ci_key is None) != (ci_cert_pem is None):
            raise ValueError("give both ci_key and ci_cert_pem, or neither")
        issuer_key = ci_key or self._own("ci_key", "CI")
        issuer_cert = x509.load_pem_x509_certificate(ci_cert_pem) if ci_cert_pem else self.ci_cert
        key, cert = make_eum(
            issuer_key, issuer_cert, eum_oid or self.eum_oid, not_before=not_before, not_after=not_after
        )
        return key, certificate_pem(cert)
