"""Files that say something about themselves, made by the tests (no blobs): C2PA-signed copies (a throw-away
CA and ES256 signing certificate), a tampered one, generator settings in a PNG, camera EXIF, an XMP label.

The signing certificate is what the C2PA SDK (c2pa-rs) accepts from a signer: X.509 v3, an ECDSA P-256 key,
issued by a CA (it refuses self-signed signing certificates), Key Usage critical with digitalSignature, an
Extended Key Usage that is neither empty nor anyExtendedKeyUsage and holds emailProtection (or
documentSigning), Basic Constraints CA:FALSE, and key identifiers that tie it to its CA. No trust list holds
this CA, so every manifest signed with it validates as "valid, untrusted signer".
"""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED = IPTC + "trainedAlgorithmicMedia"
CAPTURE = IPTC + "digitalCapture"
COMPOSITE_AI = IPTC + "compositeWithTrainedAlgorithmicMedia"
PROMPT = "a portrait of a secret person, ultra detailed, by nobody in particular"


@dataclass(frozen=True)
class SigningChain:
    """PEM of the signing certificate followed by its CA's, and the signing key (PKCS#8 PEM)."""

    certs: bytes
    key: bytes


def make_signing_chain(days: int = 30) -> SigningChain:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "muflow tests")])

    def usage(sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False, data_encipherment=False,
                             key_agreement=False, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)

    def builder(subject: str, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (builder("muflow test CA", name("muflow test CA"), ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(True, True), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (builder("muflow test signer", ca.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(True, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return SigningChain(leaf.public_bytes(pem) + ca.public_bytes(pem),
                        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def manifest(actions: list[dict], generator: str = "muflow-test-generator") -> dict:
    return {"claim_generator_info": [{"name": generator, "version": "1.0"}], "title": "test asset",
            "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}]}


def sign(data: bytes, chain: SigningChain, definition: dict, mime: str = "image/jpeg", parent: bytes | None = None,
         remote_url: str | None = None) -> bytes:
    """``data`` with a C2PA manifest signed by ``chain`` (``parent``: the asset it was made from, as its parent
    ingredient labelled ``parent``, which an opened action names in its ingredientIds; ``remote_url``: the manifest
    is not embedded, only this URL to it)."""
    import c2pa

    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain.certs, chain.key, None))
    builder = c2pa.Builder(definition)
    if parent is not None:
        builder.add_ingredient({"title": "parent", "relationship": "parentOf", "label": "parent"}, mime, io.BytesIO(parent))
    if remote_url is not None:
        builder.set_no_embed()
        builder.set_remote_url(remote_url)
    out = io.BytesIO()
    builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


def tamper(data: bytes) -> bytes:
    """One byte of the image data changed (well after the manifest, before the end-of-image marker)."""
    b = bytearray(data)
    b[len(b) - 1000] ^= 0x01
    return bytes(b)


def png_with_parameters(rgb: np.ndarray) -> bytes:
    """A PNG with the settings chunk AUTOMATIC1111-style front-ends write: prompt, negative prompt, settings."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", f"{PROMPT}\nNegative prompt: blurry\nSteps: 30, Sampler: DPM++ 2M, CFG scale: 7, Seed: 42, "
                                "Size: 512x512, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Version: v1.10.1")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def jpeg_with_exif(rgb: np.ndarray, make: str = "Canon", model: str = "Canon EOS 5D Mark IV", software: str | None = "Firmware 1.0.4",
                   taken: str = "2021:03:04 12:30:00") -> bytes:
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x010F], exif[0x0110] = make, model
    if software:
        exif[0x0131] = software
    exif.get_ifd(0x8769)[0x9003] = taken
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=92)
    return buf.getvalue()


def xmp_packet(source: str | None = TRAINED, tool: str | None = "Example Image Service 3", extra: str = "") -> bytes:
    """An XMP packet as platforms write it: the IPTC DigitalSourceType (as an attribute) and xmp:CreatorTool."""
    attr = f' Iptc4xmpExt:DigitalSourceType="{source}"' if source else ""
    tool_el = f"<xmp:CreatorTool>{tool}</xmp:CreatorTool>" if tool else ""
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
            'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
            f'{attr}>{tool_el}{extra}</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode()


def jpeg_with_xmp(rgb: np.ndarray, packet: bytes) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", xmp=packet, quality=92)
    return buf.getvalue()
