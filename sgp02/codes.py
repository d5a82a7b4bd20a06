"""The one catalogue of SGP.02 subject and reason codes, and the domain error that carries them.

Cores (smsr_core, smdp_core) raise :class:`FunctionFailed` with a :class:`StatusCode` from this
module; the binding layer turns it into a ``FunctionExecutionStatus`` (Status FAILED or EXPIRED plus
``StatusCodeData``). Nothing here knows about SOAP.

Sources: ../shared/reference/sgp02-wire.md section 4 (subject codes 4.1, reason codes 4.2, the
combinations of 4.3 and the per-function lists of 4.4). Numbers that the reference marks [M]
(3.10 "invalid destination", 4.8 "insufficient memory") are used as written there and pinned by
tests; change them here, in one place, once the spec text settles them.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Status(str, Enum):
    """ExecutionStatusType/Status, in the XSD spelling used on the wire."""

    EXECUTED_SUCCESS = "EXECUTED_SUCCESS"
    EXECUTED_WITHWARNING = "EXECUTED_WITHWARNING"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"

    @classmethod
    def parse(cls, text: str) -> "Status":
        """Accept the XSD form and the prose form ("Executed-Success", ...)."""
        key = text.strip().upper().replace("-", "_")
        if key == "EXECUTED_WITHWARNING" or key == "EXECUTED_WITH_WARNING":
            return cls.EXECUTED_WITHWARNING
        return cls(key)


class Subject(str, Enum):
    """Subject codes (sgp02-wire.md 4.1)."""

    FUNCTION_REQUESTER = "1.1"
    FUNCTION_PROVIDER = "1.2"
    VALIDITY_PERIOD = "1.2.1"
    FUNCTION = "1.6"
    EUICC = "8.1"
    EID = "8.1.1"
    PROFILE = "8.2"
    PROFILE_ICCID = "8.2.1"
    POL1 = "8.2.2"
    POL2 = "8.2.3"
    PROFILE_TYPE = "8.2.5"
    SUBSCRIPTION_ADDRESS = "8.2.6"
    ISD_P = "8.3"
    SD_AID = "8.3.1"
    ISD_R = "8.4"
    ECASD_CERTIFICATE = "8.5.2"
    SMSR_CERTIFICATE = "8.5.3"
    EIS = "8.6"
    SMSR = "8.7"


class Reason(str, Enum):
    """Reason codes (sgp02-wire.md 4.2)."""

    UNKNOWN_REQUESTER = "1.1"
    NOT_ALLOWED = "1.2"
    INVALID = "2.1"
    MANDATORY_ELEMENT_MISSING = "2.2"
    CONDITIONAL_ELEMENT_MISSING = "2.3"
    UNSUPPORTED = "3.1"
    ALREADY_IN_USE = "3.3"
    UNAVAILABLE = "3.7"
    REFUSED = "3.8"
    UNKNOWN = "3.9"
    INVALID_DESTINATION = "3.10"  # number [M], sgp02-wire.md 4.2
    EXECUTION_ERROR = "4.2"
    BUSY = "4.4"
    INSUFFICIENT_MEMORY = "4.8"  # number [M], sgp02-wire.md 4.2
    TTL_EXPIRED = "5.3"
    NO_RESPONSE = "5.4"
    VERIFICATION_FAILED = "6.1"
    EXPIRED = "6.3"
    MAX_ATTEMPTS = "6.4"


@dataclass(frozen=True)
class StatusCode:
    """A Subject/Reason pair (the dotted strings of StatusCodeData) and what it means."""

    subject: str
    reason: str
    meaning: str = ""


def _c(subject: Subject, reason: Reason, meaning: str) -> StatusCode:
    return StatusCode(subject.value, reason.value, meaning)


S, R = Subject, Reason

# Common codes, any function (sgp02-wire.md 4.3).
CALLER_UNKNOWN = _c(S.FUNCTION_REQUESTER, R.UNKNOWN_REQUESTER, "Function requester unknown")
CALLER_NOT_ALLOWED = _c(S.FUNCTION_REQUESTER, R.NOT_ALLOWED, "Function requester not allowed to use this function")
INTERNAL_ERROR = _c(S.FUNCTION_PROVIDER, R.EXECUTION_ERROR, "Function provider execution error")
PROVIDER_BUSY = _c(S.FUNCTION_PROVIDER, R.BUSY, "Function provider busy")
VALIDITY_PERIOD_REFUSED = _c(S.VALIDITY_PERIOD, R.REFUSED, "Validity period not accepted")
INVALID_PARAMETER = _c(S.FUNCTION, R.INVALID, "Invalid parameter")
MISSING_PARAMETER = _c(S.FUNCTION, R.MANDATORY_ELEMENT_MISSING, "Mandatory parameter missing")
MISSING_CONDITIONAL_PARAMETER = _c(S.FUNCTION, R.CONDITIONAL_ELEMENT_MISSING, "Conditional parameter missing")
FUNCTION_UNSUPPORTED = _c(S.FUNCTION, R.UNSUPPORTED, "Function not supported")
# An asynchronous request whose FunctionCallIdentifier an earlier request of the same requester (another MessageID)
# already used: the function runs once, for the first. sgp02-wire.md 4.3 lists no code for it; 3.3 "already in
# use" (4.2) on the Function subject is the nearest reading. Chosen here, pinned by tests.
FUNCTION_CALL_ID_IN_USE = _c(S.FUNCTION, R.ALREADY_IN_USE, "FunctionCallIdentifier already used")
EXPIRED_TTL = _c(S.FUNCTION, R.TTL_EXPIRED, "Validity period expired")
NO_RESPONSE = _c(S.FUNCTION, R.NO_RESPONSE, "Delivered with no response")

# Object codes (sgp02-wire.md 4.3 and 4.4).
EUICC_NOT_ALLOWED = _c(S.EUICC, R.NOT_ALLOWED, "Requester not allowed to manage this eUICC")
EUICC_REFUSED = _c(S.EUICC, R.REFUSED, "eUICC refused the operation")
EID_UNKNOWN = _c(S.EID, R.UNKNOWN, "EID unknown")
EID_ALREADY_REGISTERED = _c(S.EID, R.ALREADY_IN_USE, "EID already registered")
EID_INVALID = _c(S.EID, R.INVALID, "EID invalid")
PROFILES_NOT_OWNED = _c(S.PROFILE, R.NOT_ALLOWED, "Some profiles do not belong to the requester")
ICCID_UNKNOWN = _c(S.PROFILE_ICCID, R.UNKNOWN, "ICCID unknown")
ICCID_NOT_ALLOWED = _c(S.PROFILE_ICCID, R.NOT_ALLOWED, "Requester not allowed to manage this profile")
ICCID_OTHER_EUICC = _c(S.PROFILE_ICCID, R.INVALID_DESTINATION, "ICCID installed on another eUICC")
ICCID_IN_USE = _c(S.PROFILE_ICCID, R.ALREADY_IN_USE, "ICCID already in use")
# ES2-DownloadProfile naming both an ICCID and a ProfileType that do not match (njiwa returns 8.2.1 or
# 8.2.5 with 2.1 for invalid profile data, sgp02-wire.md 4.4; the ICCID is the more precise object).
ICCID_INVALID = _c(S.PROFILE_ICCID, R.INVALID, "ICCID invalid for this request")
POL1_REFUSED = _c(S.POL1, R.REFUSED, "POL1 forbids the operation")
POL2_REFUSED = _c(S.POL2, R.REFUSED, "POL2 forbids the operation")
POL2_INVALID = _c(S.POL2, R.INVALID, "POL2 invalid")
PROFILE_TYPE_UNKNOWN = _c(S.PROFILE_TYPE, R.UNKNOWN, "Profile type unknown")
PROFILE_TYPE_NOT_ALLOWED = _c(S.PROFILE_TYPE, R.NOT_ALLOWED, "Profile type not allowed")
# The SM-DP has no available profile of the type left. sgp02-wire.md 4.4 lists no code for it; 3.7
# "unavailable" (4.2) on the ProfileType object is the nearest reading. Chosen here, pinned by tests.
PROFILE_TYPE_NO_STOCK = _c(S.PROFILE_TYPE, R.UNAVAILABLE, "No profile of this type available")
SUBSCRIPTION_ADDRESS_NOT_ALLOWED = _c(S.SUBSCRIPTION_ADDRESS, R.NOT_ALLOWED, "Subscription address not allowed")
ISDR_EXECUTION_ERROR = _c(S.ISD_R, R.EXECUTION_ERROR, "Command execution error on the eUICC")
ECASD_CERT_EXPIRED = _c(S.ECASD_CERTIFICATE, R.EXPIRED, "ECASD certificate expired")
ECASD_CERT_INVALID = _c(S.ECASD_CERTIFICATE, R.VERIFICATION_FAILED, "ECASD certificate verification failed")
SMSR_CERT_EXPIRED = _c(S.SMSR_CERTIFICATE, R.EXPIRED, "SM-SR certificate expired")
EIS_NOT_ALLOWED = _c(S.EIS, R.NOT_ALLOWED, "Not allowed to manage this EIS")
EIS_INVALID = _c(S.EIS, R.INVALID, "EIS invalid")
EIS_SIGNATURE_INVALID = _c(S.EIS, R.VERIFICATION_FAILED, "EUM signature verification failed")
SMSR_UNKNOWN = _c(S.SMSR, R.UNKNOWN, "SM-SR unknown or not reachable")
# SM-SR change (sgp02-wire.md 4.4 and 6.5). PrepareSMSRChange at an SM-SR that holds the EID already: "1.2/3.x (SM-SR2
# cannot manage the eUICC)" in S1; 3.8 "refused" chosen. A second change of an eUICC while one runs: no code is known;
# 8.1/4.4 "busy" on the eUICC chosen. A change asked of the SM-SR that already manages the eUICC: 8.7/3.8 chosen. The
# card refusing the new SM-SR's certificate: 8.5.3/6.1; a receipt that does not verify: 8.4/6.1 (the ISD-R's key
# establishment). The preparation not performed: 8.1.1/3.9 (S1; njiwa uses 8.1.1/1.1). Pinned by tests.
SMSR_CANNOT_TAKE = _c(S.FUNCTION_PROVIDER, R.REFUSED, "This SM-SR cannot take over the eUICC")
SMSR_CHANGE_IN_PROGRESS = _c(S.EUICC, R.BUSY, "An SM-SR change of this eUICC is in progress")
SMSR_TARGET_IS_CURRENT = _c(S.SMSR, R.REFUSED, "The target SM-SR is the current one")
SMSR_CERT_REFUSED = _c(S.SMSR_CERTIFICATE, R.VERIFICATION_FAILED, "SM-SR certificate verification failed")
ISDR_KEYSET_NOT_VERIFIED = _c(S.ISD_R, R.VERIFICATION_FAILED, "ISD-R key establishment verification failed")
NOT_PREPARED = _c(S.EID, R.UNKNOWN, "SM-SR change preparation not performed for this eUICC")
# ES3-CreateISDP refused by the card for lack of memory (SW 6A84): subject and reason as S1 names them
# (sgp02-wire.md 4.3/4.4, the reason number 4.8 is [M]).
EUICC_INSUFFICIENT_MEMORY = _c(S.EUICC, R.INSUFFICIENT_MEMORY, "Not enough memory on the eUICC")
# ES3-SendData (sgp02-wire.md 4.4): the target security domain and the ISD-P's execution error.
ISDP_EXECUTION_ERROR = _c(S.ISD_P, R.EXECUTION_ERROR, "Execution error in the ISD-P")
SD_AID_UNKNOWN = _c(S.SD_AID, R.UNKNOWN, "Target security domain unknown")
SD_AID_OTHER_EUICC = _c(S.SD_AID, R.INVALID_DESTINATION, "Target security domain on another eUICC")
SD_AID_NOT_ALLOWED = _c(S.SD_AID, R.NOT_ALLOWED, "Requester not allowed to address this security domain")


class FunctionFailed(Exception):
    """A function ended with a status other than success, for a reason the spec names.

    ``status`` is FAILED unless the validity period ran out (EXPIRED).
    """

    def __init__(
        self,
        code: StatusCode,
        message: str | None = None,
        *,
        subject_identifier: str | None = None,
        status: Status = Status.FAILED,
    ) -> None:
        self.code = code
        self.message = message or code.meaning
        self.subject_identifier = subject_identifier
        self.status = status
        super().__init__(f"{code.subject}/{code.reason}: {self.message}")


def call_id_reused(function_call_id: str | None, first_message_id: str | None) -> FunctionFailed:
    """The answer to a request whose FunctionCallIdentifier an earlier request (``first_message_id``) already used."""
    return FunctionFailed(FUNCTION_CALL_ID_IN_USE, f"FunctionCallIdentifier {function_call_id} was used by the request "
                          f"{first_message_id}; its outcome relates to that request", subject_identifier=function_call_id)


class PeerUnreachable(FunctionFailed):
    """An outgoing call that did not reach the peer (connection refused, timeout): worth trying again."""

    def __init__(self, message: str) -> None:
        super().__init__(SMSR_UNKNOWN, message)
