"""The hash a CMS signature was made with: MD5 and SHA-1 are refused (RFC 8551 2.1 and 2.2,
Direct's trust framework), since a collision lets content the signer never saw carry their
signature. openssl verifies whatever digest the signer's client chose and has no option to
refuse one, so the SignerInfos are read here, with asn1crypto (docs/decisions.md).

Anything in the structure that cannot be read is a failure (`smime-unreadable`), never an
exception and never a pass: the check fails closed."""

from __future__ import annotations

from asn1crypto import cms

from mailflow.crypto.openssl_cms import CmsFailure

WEAK_CODE = "smime-weak-hash"
# digest algorithms (SignerInfo.digestAlgorithm), by OID: the name the admin reads
WEAK_DIGESTS = {
    "1.2.840.113549.2.2": "MD2",
    "1.2.840.113549.2.4": "MD4",
    "1.2.840.113549.2.5": "MD5",
    "1.3.14.3.2.26": "SHA-1",
}
# signature algorithms that name their hash (SignerInfo.signatureAlgorithm)
WEAK_SIGNATURES = {
    "1.2.840.113549.1.1.2": "MD2",  # md2WithRSAEncryption
    "1.2.840.113549.1.1.3": "MD4",  # md4WithRSAEncryption
    "1.2.840.113549.1.1.4": "MD5",  # md5WithRSAEncryption
    "1.2.840.113549.1.1.5": "SHA-1",  # sha1WithRSAEncryption
    "1.3.14.3.2.29": "SHA-1",  # sha1WithRSAEncryption (OIW)
    "1.2.840.10040.4.3": "SHA-1",  # dsa-with-sha1
    "1.2.840.10045.4.1": "SHA-1",  # ecdsa-with-SHA1
}
_PSS = "1.2.840.113549.1.1.10"  # RSASSA-PSS names its hash in its parameters (SHA-1 if none)
_SIGNED_DATA = "1.2.840.113549.1.7.2"


def weak_hash(der: bytes) -> str:
    """The weak hash any signer of this CMS SignedData (DER) used ("SHA-1"), or "" if none."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].dotted != _SIGNED_DATA:
            raise ValueError("not signed data")
        signers = info["content"]["signer_infos"]
        if len(signers) == 0:
            raise ValueError("no signers")
        for signer in signers:
            weak = _signer_weak_hash(signer)
            if weak:
                return weak
        return ""
    except Exception as exc:  # asn1crypto raises several kinds on damaged input; all fail
        raise CmsFailure("smime-unreadable", "the signature's structure cannot be read "
                         f"({type(exc).__name__})") from None


def check(der: bytes) -> None:
    """Refuse a signature (CmsFailure `smime-weak-hash`) made with MD5 or SHA-1."""
    weak = weak_hash(der)
    if weak:
        raise CmsFailure(WEAK_CODE, f"the signature uses {weak}, a hash too weak to trust")


def _signer_weak_hash(signer: cms.SignerInfo) -> str:
    digest = signer["digest_algorithm"]["algorithm"].dotted
    signature = signer["signature_algorithm"]
    algorithm = signature["algorithm"].dotted
    weak = WEAK_DIGESTS.get(digest) or WEAK_SIGNATURES.get(algorithm, "")
    if not weak and algorithm == _PSS:
        weak = WEAK_DIGESTS.get(signature["parameters"]["hash_algorithm"]["algorithm"].dotted,
                                "")
    return weak
