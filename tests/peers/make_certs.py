"""Writes a throwaway CA and server certificates into a folder, for TLS tests.

ca.pem; good.pem/good.key (localhost, 127.0.0.1, ::1; valid);
expired.pem/expired.key (expired yesterday); other.pem/other.key (valid, but
for the name other.test only); client.pem/client.key (a client certificate);
rsa.pem/rsa.key (as good, with an RSA 2048 key, as most public sites use).
"""
import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
now = datetime.datetime.now(datetime.timezone.utc)


def key(kind="ec"):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def write(name, cert, k):
    (out / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if k is not None:
        (out / f"{name}.key").write_bytes(
            k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


ca_key = key()
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sockpulse test CA")])
ca = (
    x509.CertificateBuilder()
    .subject_name(ca_name)
    .issuer_name(ca_name)
    .public_key(ca_key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(days=2))
    .not_valid_after(now + datetime.timedelta(days=30))
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .add_extension(
        x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
    )
    .sign(ca_key, hashes.SHA256())
)
write("ca", ca, None)


def leaf(name, sans, not_before, not_after, usage=x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, kind="ec"):
    k = key(kind)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0])]))
        .issuer_name(ca_name)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(s) if not s[0].isdigit() and ":" not in s else x509.IPAddress(ipaddress.ip_address(s)) for s in sans]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write(name, cert, k)


day = datetime.timedelta(days=1)
leaf("good", ["localhost", "127.0.0.1", "::1"], now - day, now + 20 * day)
leaf("expired", ["localhost", "127.0.0.1", "::1"], now - 10 * day, now - day)
leaf("other", ["other.test"], now - day, now + 20 * day)
leaf("rsa", ["localhost", "127.0.0.1", "::1"], now - day, now + 20 * day, kind="rsa")
leaf("client", ["sockpulse-client"], now - day, now + 20 * day, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)
print(f"certificates in {out}")
