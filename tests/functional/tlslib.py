"""tlslib.py - what the transport tests (issue 3) share: a test CA and
server certificates made with the openssl command, TLS client contexts,
an aiosmtpd upstream that speaks STARTTLS and/or AUTH, and STARTTLS on
mwlib's raw SMTP client.

Everything listens on and connects to 127.0.0.1 only."""

import os
import ssl
import subprocess

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

import mwlib


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class PKI:
    """A CA and server certificates signed by it, in directory d.
    cert(name) -> (chain_path, key_path) for a certificate whose CN and
    subjectAltName are name."""

    def __init__(self, d):
        self.dir = str(d)
        os.makedirs(self.dir, exist_ok=True)
        self.ca = os.path.join(self.dir, "ca.pem")
        self.ca_key = os.path.join(self.dir, "ca.key")
        # 30 days: a listener certificate that expires within 14 is warned
        # of (README "TLS towards clients"), in every test's log
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                 "-subj", "/CN=mailwarden test CA", "-keyout", self.ca_key, "-out", self.ca,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        self._made = {}

    def cert(self, name):
        if name in self._made:
            return self._made[name]
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        crt = os.path.join(self.dir, name + ".crt")
        chain = os.path.join(self.dir, name + ".chain.pem")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" % name)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name,
                 "-keyout", key, "-out", csr, cwd=self.dir)
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                 "-CAcreateserial", "-days", "30", "-extfile", ext, "-out", crt, cwd=self.dir)
        with open(chain, "w") as out:
            out.write(open(crt).read())
            out.write(open(self.ca).read())
        self._made[name] = (chain, key)
        return chain, key

    def cert_dated(self, name, start_days, end_days, ips=("127.0.0.1",)):
        """A certificate for name (and ips) signed by the CA, valid from
        start_days to end_days from now (negative: in the past), with its
        key: (chain_path, key_path).  openssl x509 -days cannot date one
        in the past: python's cryptography does."""
        import datetime
        import ipaddress
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
        ca_key = serialization.load_pem_private_key(open(self.ca_key, "rb").read(), None)
        ca = x509.load_pem_x509_certificate(open(self.ca, "rb").read())
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        san = [x509.DNSName(name)] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now + datetime.timedelta(days=start_days))
                .not_valid_after(now + datetime.timedelta(days=end_days))
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .sign(ca_key, hashes.SHA256()))
        base = os.path.join(self.dir, "%s.%g.%g" % (name, start_days, end_days))
        with open(base + ".chain.pem", "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM) + open(self.ca, "rb").read())
        with open(base + ".key", "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return base + ".chain.pem", base + ".key"

    def client_context(self, verify=True, min_version=None, max_version=None, ciphers=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            ctx.load_verify_locations(self.ca)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if min_version:
            ctx.minimum_version = min_version
        if max_version:
            ctx.maximum_version = max_version
        if ciphers:
            ctx.set_ciphers(ciphers)
        return ctx

    def server_context(self, name):
        chain, key = self.cert(name)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(chain, key)
        return ctx


def listener_tls_opts(chain, key, mode="starttls", name="default", extra=()):
    """-o pairs that turn TLS on for a listener of mwlib.Mailwarden."""
    p = "listener.%s." % name
    return [(p + "tls", mode), (p + "tls_cert", chain), (p + "tls_key", key)] + \
        [(p + k, v) for k, v in extra]


def starttls(client, ctx, server_hostname="mx.example.test"):
    """STARTTLS on an mwlib.SMTPClient; returns the 220 reply.  The client's
    socket is the TLS one afterwards."""
    r = client.cmd("STARTTLS")
    assert r.code == 220, r
    client.sock = ctx.wrap_socket(client.sock, server_hostname=server_hostname)
    return r


class TLSUpstream(mwlib.Upstream):
    """mwlib's aiosmtpd upstream with STARTTLS (tls_context) and/or AUTH
    (users: {name: password}).  session_tls: one entry per message, the TLS
    cipher the message came in with (None for plaintext); auth_logins: who
    authenticated."""

    def __init__(self, tls_context=None, users=None, require_starttls=False, **kw):
        super().__init__(**kw)
        self.auth_logins = []
        users = users or {}

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = users.get(auth_data.login.decode()) == auth_data.password.decode()
            if ok:
                self.auth_logins.append(auth_data.login.decode())
            return AuthResult(success=ok, handled=False)

        extra = {}
        if tls_context is not None:
            extra.update(tls_context=tls_context, require_starttls=require_starttls)
        if users:
            extra.update(authenticator=authenticator, auth_require_tls=False,
                         auth_exclude_mechanism=["CRAM-MD5"])
        handler = self.controller.handler
        outer = self

        class Handler(type(handler)):
            async def handle_DATA(self, server, session, envelope):
                outer.session_tls.append(session.ssl.get("cipher") if session.ssl else None)
                return await super().handle_DATA(server, session, envelope)
        self.session_tls = []
        self.controller = Controller(Handler(self), hostname=self.host, port=self.port,
                                     server_hostname="upstream.test", enable_SMTPUTF8=True,
                                     data_size_limit=64 * 1024 * 1024, decode_data=False, **extra)
