"""XML namespaces of the SGP.02 SOAP binding (sgp02-wire.md sections 1 and 2)."""

GSMA = "http://namespaces.gsma.org/esim-messaging/3"
WSA = "http://www.w3.org/2005/08/addressing"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
DS = "http://www.w3.org/2000/09/xmldsig#"

NSMAP = {"rps": GSMA, "wsa": WSA, "env": SOAP12}

SOAP12_CONTENT_TYPE = "application/soap+xml; charset=utf-8"
SOAP11_CONTENT_TYPE = "text/xml; charset=utf-8"


def q(local: str, ns: str = GSMA) -> str:
    """Clark notation of a name in the GSMA namespace (or another one)."""
    return f"{{{ns}}}{local}"
