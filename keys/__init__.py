"""Keys, certificates and signatures of the esx suite.

- ``tlv``: BER-TLV (GlobalPlatform style).
- ``gp_cert``: GlobalPlatform '7F21' certificates (ECASD, SM-DP, SM-SR).
- ``chain``: CI → EUM → ECASD and CI → SM-DP/SM-SR chain checks.
- ``pki``: the development PKI, generated at run time into a data directory.
- ``xmldsig``: the ES1 ``EumSignature`` over an EIS.
- ``errors``: ``TlvError``, ``CertificateError``, ``SignatureError``.
"""
