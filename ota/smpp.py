"""SMPP 3.4 for OTA SMS, the wire codec: PDUs as smpplib builds and parses them, and the GSM header values of an
OTA SMS. No I/O here: the SM-SR's ESME (esx.smpp) and the loopback SMSC (euicc_sim.smsc) use these helpers from
opposite ends, so there is one codec per wire format.

The SM-SR sends each OTA secured packet (ETSI TS 102 225 command packet, already split into SMS by the OTA layer)
as one ``submit_sm``: binary user data with a user data header (esm_class 0x40 = UDHI), TP-PID 0x7F (SIM data
download) and TP-DCS 0xF6 (8-bit, class 2). Proofs of receipt and mobile-originated notifications come back as
``deliver_sm``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from smpplib import command, consts, smpp

# SMPP 3.4 §5.1.3 command_status values used here.
ESME_ROK = consts.SMPP_ESME_ROK
ESME_RINVCMDID = consts.SMPP_ESME_RINVCMDID
ESME_RINVBNDSTS = consts.SMPP_ESME_RINVBNDSTS
ESME_RALYBND = consts.SMPP_ESME_RALYBND
ESME_RINVPASWD = consts.SMPP_ESME_RINVPASWD
ESME_RINVSYSID = consts.SMPP_ESME_RINVSYSID
ESME_RX_T_APPN = consts.SMPP_ESME_RX_T_APPN  # "temporary application error": the SMSC retries later

ESM_CLASS_UDHI = consts.SMPP_GSMFEAT_UDHI  # 0x40, §5.2.12: short_message starts with a user data header
PID_SIM_DATA_DOWNLOAD = 0x7F  # 3GPP TS 23.040 §9.2.3.9
DCS_8BIT_CLASS2 = 0xF6  # 3GPP TS 23.038 §4: 8-bit data, message class 2 (SIM specific)

# 3GPP TS 23.040 §9.2.3.24: TP-User-Data holds at most 140 octets of 8-bit data, UDH included. Longer OTA packets
# are concatenated SMS, split by the OTA layer; the SMSC would reject more.
MAX_USER_DATA = 140

# All addresses are digit strings; TON unknown + NPI ISDN/E.164 lets the SMSC apply its own numbering plan.
ADDR_TON = consts.SMPP_TON_UNK
ADDR_NPI = consts.SMPP_NPI_ISDN

# SMPP 3.4 §4.1.2/§4.1.4/§4.1.6/§4.4.2: these response bodies are not returned when command_status is non-zero.
_NO_BODY_ON_ERROR = frozenset({"bind_transmitter_resp", "bind_receiver_resp", "bind_transceiver_resp",
                               "submit_sm_resp"})


@dataclass(frozen=True)
class ShortMessage:
    """One SMS as SMPP carries it: addresses, TP-User-Data (``short_message``) and the GSM header values."""

    source_addr: str
    destination_addr: str
    short_message: bytes
    esm_class: int = ESM_CLASS_UDHI
    protocol_id: int = PID_SIM_DATA_DOWNLOAD
    data_coding: int = DCS_8BIT_CLASS2


# --- PDU helpers, shared with euicc_sim.smsc -------------------------------------------------------------------


class SequenceGenerator:
    """Thread-safe sequence numbers (SMPP 3.4 §3.2: 0x00000001..0x7FFFFFFF, wrapping).

    Has the two members smpplib reads from its ``client`` argument (``sequence``, ``next_sequence()``), so it is
    passed as ``client=`` to ``make_pdu``. smpplib's own SimpleSequenceGenerator is not locked.
    """

    MAX_SEQUENCE = 0x7FFFFFFF

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sequence = 0

    @property
    def sequence(self) -> int:
        return self._sequence

    def next_sequence(self) -> int:
        with self._lock:
            self._sequence = 1 if self._sequence >= self.MAX_SEQUENCE else self._sequence + 1
            return self._sequence


class _NoSequence:
    """``client`` for parsing: smpplib draws a sequence number for every request PDU it instantiates, even one it
    is about to overwrite from the header; this keeps parsing from consuming real sequence numbers."""

    sequence = 0

    def next_sequence(self) -> int:
        return 0


_NO_SEQUENCE = _NoSequence()


def parse_pdu(frame: bytes) -> command.Command:
    """One whole PDU (header included) to an smpplib command object.

    Raises ``smpplib.exceptions.UnknownCommandError`` for a command_id smpplib does not support. String fields come
    back as ``bytes``.
    """
    return smpp.parse_pdu(frame, client=_NO_SEQUENCE, allow_unknown_opt_params=True)


def response_pdu(request: command.Command, status: int = ESME_ROK, **fields: Any) -> command.Command:
    """The ``<command>_resp`` answering ``request``, same sequence number (SMPP 3.4 §3.2)."""
    resp = smpp.make_pdu(f"{request.command}_resp", client=_NO_SEQUENCE, status=status, **fields)
    # Must be assigned after construction: smpplib ignores a ``sequence=`` keyword and a response PDU without an
    # assigned sequence reports the generator's current value instead.
    resp.sequence = request.sequence
    if status != ESME_ROK and resp.command in _NO_BODY_ON_ERROR:
        resp.params_order = ()  # header only
    return resp


def generic_nack(sequence: int, status: int) -> command.Command:
    """``generic_nack`` (SMPP 3.4 §4.3) for a PDU that could not be handled; header only."""
    nack = smpp.make_pdu("generic_nack", client=_NO_SEQUENCE, status=status)
    nack.sequence = sequence
    return nack


def message_pdu(command_name: str, message: ShortMessage, sequences: SequenceGenerator) -> command.Command:
    """``submit_sm`` (SMPP 3.4 §4.4.1) or ``deliver_sm`` (§4.6.1) carrying ``message`` in ``short_message``.

    No delivery receipt (registered_delivery 0): the OTA layer learns the outcome from the PoR.
    """
    if command_name not in ("submit_sm", "deliver_sm"):
        raise ValueError(f"not a message command: {command_name}")
    check_user_data(message)
    return smpp.make_pdu(
        command_name,
        client=sequences,
        service_type="",
        source_addr_ton=ADDR_TON,
        source_addr_npi=ADDR_NPI,
        source_addr=message.source_addr,
        dest_addr_ton=ADDR_TON,
        dest_addr_npi=ADDR_NPI,
        destination_addr=message.destination_addr,
        esm_class=message.esm_class,
        protocol_id=message.protocol_id,
        priority_flag=0,
        schedule_delivery_time="",
        validity_period="",
        registered_delivery=0,
        replace_if_present_flag=0,
        data_coding=message.data_coding,
        sm_default_msg_id=0,
        short_message=message.short_message,
    )


def check_user_data(message: ShortMessage) -> None:
    if len(message.short_message) > MAX_USER_DATA:
        raise ValueError(f"user data is {len(message.short_message)} octets; one SMS holds {MAX_USER_DATA}")


def message_from_pdu(pdu: command.Command) -> ShortMessage:
    """The :class:`ShortMessage` in a parsed ``submit_sm`` / ``deliver_sm`` (``message_payload`` TLV if used)."""
    data = pdu.short_message or getattr(pdu, "message_payload", None) or b""
    return ShortMessage(
        source_addr=field_text(pdu.source_addr),
        destination_addr=field_text(pdu.destination_addr),
        short_message=bytes(data),
        esm_class=pdu.esm_class or 0,
        protocol_id=pdu.protocol_id or 0,
        data_coding=pdu.data_coding or 0,
    )


def field_text(value: bytes | str | None) -> str:
    """A C-octet string field as str: smpplib parses them to bytes (and generates them only from str)."""
    if value is None:
        return ""
    return value.decode("latin-1") if isinstance(value, bytes) else value


# --- the ESME ----------------------------------------------------------------------------------------------------


