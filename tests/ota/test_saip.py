"""ota.saip: our PEDefinitions module against the TCA one (oracle), the TS.48 profiles, personalisation,
the card-side stream reader, PEStatus answers, and the byte codecs.

The oracle files (the TCA ASN.1 module and the GSMA TS.48 test profiles) are read from ../shared/saip by path and
never copied; the tests that need them skip when that directory is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import asn1tools
import pytest

from ota import saip
from ota.saip import Personalisation, PeStatus, SaipError
from tests import in_ci, unavailable

H = bytes.fromhex


def hx(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))

SHARED = Path(__file__).parents[2].parent / "shared" / "saip"
OFFICIAL_MODULE = SHARED / "PE_Definitions-3.3.1.asn"
TS48 = ["TS48v2_SAIP2.1_NoBERTLV.der", "TS48v4_SAIP2.3_BERTLV.der", "TS48v5_SAIP2.1A_NoBERTLV.der"]

# Under CI=true the oracle must be there: the tests then run and fail on the missing files (tests.unavailable).
needs_oracle = pytest.mark.skipif(not OFFICIAL_MODULE.exists() and not in_ci(),
                                  reason=f"oracle data (TCA module, TS.48 profiles) not found in {SHARED}")

SUB = Personalisation(iccid="8988299000000000014", imsi="001010000000001", msisdn="447900000101",
                      ki=H("000102030405060708090A0B0C0D0E0F"), opc=H("101112131415161718191A1B1C1D1E1F"),
                      pin1="1234", puk1="87654321", pin2="5678", puk2="11223344", adm1="31415926")


@pytest.fixture(scope="module")
def official():
    if not OFFICIAL_MODULE.exists():
        unavailable(f"oracle TCA module not found in {SHARED}")
    return asn1tools.compile_files(str(OFFICIAL_MODULE), "der")


def ts48(name: str) -> bytes:
    path = SHARED / name
    if not path.exists():
        unavailable(f"oracle TS.48 profile {name} not found in {SHARED}")
    return path.read_bytes()


def official_pes(official, der: bytes) -> list[tuple[str, dict]]:
    return [official.decode("ProfileElement", raw) for raw in saip.split_pes(der)]


def without_official_sqn_default(pe: tuple[str, dict]) -> tuple[str, dict]:
    """The TCA module decodes an absent sqnInit as its (mistyped) DEFAULT; our module leaves it absent."""
    name, value = pe
    if name == "akaParameter" and not isinstance(value.get("sqnInit"), list):
        value = {k: v for k, v in value.items() if k != "sqnInit"}
    return name, value


def file_content(items) -> bytes:
    """Content a File writes, from offset 0 (test helper: assumes it is written without gaps)."""
    return b"".join(v for k, v in items if k == "fillFileContent")


def tlv(tag: bytes, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x81, n]) if n < 0x100 else bytes([0x82]) + n.to_bytes(2, "big")
    return tag + length + content


# --- byte codecs ---------------------------------------------------------------------------------------------------

def test_iccid_codec():
    # EF.ICCID: nibbles swapped, 'F' filler: 89 88 29 90 00 00 00 00 01 4F -> 98 88 92 09 00 00 00 00 10 F4
    assert saip.encode_iccid("8988299000000000014") == hx("98 88 92 09 00 00 00 00 10 F4")
    assert saip.encode_iccid("8988299000000000014", swap=False) == H("8988299000000000014F")
    assert saip.encode_iccid("89000123456789012358") == H("98001032547698103285")
    assert saip.decode_iccid(H("988892090000000010F4")) == "8988299000000000014"
    assert saip.decode_iccid(H("8988299000000000014F"), swap=False) == "8988299000000000014"
    for bad in ("898829900000000001", "8988299000000000014123", "898829900000000001A"):
        with pytest.raises(SaipError) as err:
            saip.encode_iccid(bad)
        assert err.value.status == saip.INVALID_PARAMETER
    with pytest.raises(SaipError):
        saip.decode_iccid(H("98889209000000001AF4"))


def test_imsi_codec():
    # 15 digits: length 08, then '9' (odd, IMSI) with the first digit, then swapped pairs
    assert saip.encode_imsi("001010000000001") == hx("08 09 10 10 00 00 00 00 10")
    assert saip.encode_imsi("234150999999999") == H("082943519099999999")
    # even number of digits: '1' (even, IMSI), 'F' filler in the last byte, file padded with FF
    assert saip.encode_imsi("0010112345") == hx("06 01 10 10 21 43 F5 FF FF")
    assert saip.encode_imsi("00101123456") == hx("06 09 10 10 21 43 65 FF FF")
    for imsi in ("001010000000001", "234150999999999", "00101123456", "0010112345", "001010", "00101234567890"):
        assert saip.decode_imsi(saip.encode_imsi(imsi)) == imsi
    with pytest.raises(SaipError):
        saip.encode_imsi("00101")
    with pytest.raises(SaipError):
        saip.decode_imsi(H("FFFFFFFFFFFFFFFFFF"))
    with pytest.raises(SaipError):  # parity says odd, the digits are even
        saip.decode_imsi(hx("06 09 10 10 21 43 F5 FF FF"))


def test_msisdn_record_codec():
    record = saip.encode_msisdn_record("447900000101")
    assert record == b"\xff" * 14 + hx("07 91 44 97 00 00 10 10 FF FF FF FF FF FF")
    assert len(record) == 28
    assert saip.decode_msisdn_record(record) == "447900000101"
    assert saip.decode_msisdn_record(saip.encode_msisdn_record("1234567", 14)) == "1234567"
    assert saip.encode_msisdn_record("1234567", 14) == H("0591214365F7FFFFFFFFFFFFFFFF")
    assert saip.decode_msisdn_record(saip.encode_msisdn_record(None)) is None
    with pytest.raises(SaipError):
        saip.encode_msisdn_record("+4479", 28)
    with pytest.raises(SaipError):
        saip.encode_msisdn_record("4479", 13)


def test_pin_puk_coding():
    assert saip.encode_pin("0000") == b"0000\xff\xff\xff\xff"
    assert saip.encode_pin("12345678") == b"12345678"
    assert saip.encode_puk("12345678") == b"12345678"
    for bad in ("123", "123456789", "12a4"):
        with pytest.raises(SaipError):
            saip.encode_pin(bad)
    with pytest.raises(SaipError):
        saip.encode_puk("1234567")


def test_personalisation_is_validated():
    good = dict(iccid="8988299000000000014", imsi="001010000000001", msisdn=None, ki=bytes(16), opc=bytes(16))
    Personalisation(**good)
    for change in ({"iccid": "898829900000000001"}, {"imsi": "00101"}, {"msisdn": "+44"}, {"ki": bytes(15)},
                   {"opc": "00" * 16}, {"pin1": "12"}, {"puk2": "1234"}, {"adm1": "xyz"}):
        with pytest.raises(SaipError) as err:
            Personalisation(**{**good, **change})
        assert err.value.status == saip.INVALID_PARAMETER


# --- the module ----------------------------------------------------------------------------------------------------

def test_compiled_once():
    # Functional only: how long compiling and decoding take is a benchmark's business (bench/), not a test's.
    first = saip.compiled()
    assert saip.compiled() is first
    der = saip.demo_template()
    assert saip.encode_package(saip.decode_package(der)) == der


def test_pe_status_codes_match_the_tca_module(official):
    named = {
        "ok": saip.PE_OK, "pe-not-supported": saip.PE_NOT_SUPPORTED, "memory-failure": saip.MEMORY_FAILURE,
        "bad-values": saip.BAD_VALUES, "not-enough-memory": saip.NOT_ENOUGH_MEMORY,
        "invalid-request-format": saip.INVALID_REQUEST_FORMAT, "invalid-parameter": saip.INVALID_PARAMETER,
        "runtime-not-supported": saip.RUNTIME_NOT_SUPPORTED, "lib-not-supported": saip.LIB_NOT_SUPPORTED,
        "template-not-supported": saip.TEMPLATE_NOT_SUPPORTED, "feature-not-supported": saip.FEATURE_NOT_SUPPORTED,
        "pin-code-missing": saip.PIN_CODE_MISSING, "unsupported-profile-version": saip.UNSUPPORTED_PROFILE_VERSION,
    }
    text = OFFICIAL_MODULE.read_text()
    for name, code in named.items():
        assert f"{name}({code})" in text.replace(" (", "(")


# A value for every field of a type: all optional fields present, one CHOICE alternative per variant, every
# alternative of a CHOICE inside a SEQUENCE OF in one list. Walks asn1tools' compiled type tree.
def variants(t) -> list:
    kind = type(t).__name__
    if kind in ("ExplicitTag", "Recursive"):
        return variants(t.inner)
    if kind in ("Sequence", "Set"):
        members = list(t.root_members)
        for addition in t.additions or []:
            members += addition if isinstance(addition, list) else [addition]
        per_member = [(m.name, variants(m)) for m in members]
        count = max([len(v) for _, v in per_member] or [1])
        return [{name: vs[i % len(vs)] for name, vs in per_member} for i in range(count)]
    if kind in ("SequenceOf", "SetOf"):
        return [variants(t.element_type)]
    if kind == "Choice":
        return [(m.name, v) for m in t.members if not m.name.startswith("rfu") for v in variants(m)]
    return {"OctetString": [b"\x5a\xa5"], "Integer": [5], "Null": [None], "ObjectIdentifier": ["1.2.840.5"],
            "UTF8String": ["ab"]}[kind]


@needs_oracle
@pytest.mark.parametrize("type_name", ["ProfileElement", "EUICCResponse"])
def test_every_field_has_the_tca_tag(official, type_name):
    """Both directions, with every field present: what we encode the TCA module reads back identically and encodes
    to the same bytes, and whatever the TCA module can encode (every PE but rfu1..5) our module reads back."""
    ours = saip.compiled()
    ours_values = variants(ours.types[type_name].type)
    for value in ours_values:
        der = ours.encode(type_name, value)
        assert official.encode(type_name, value) == der
        assert official.decode(type_name, der) == value
    official_values = variants(official.types[type_name].type)
    for value in official_values:
        assert ours.decode(type_name, official.encode(type_name, value)) == value
    if type_name == "ProfileElement":
        assert {v[0] for v in official_values} == {v[0] for v in ours_values}
        assert len({v[0] for v in ours_values}) == 29   # 34 alternatives minus rfu1..rfu5


# --- TS.48 profiles ------------------------------------------------------------------------------------------------

@needs_oracle
@pytest.mark.parametrize("name", TS48)
def test_ts48_decodes_like_the_tca_module_and_reencodes(official, name):
    der = ts48(name)
    ours = saip.decode_package(der)
    theirs = official_pes(official, der)
    assert [pe[0] for pe in ours] == [pe[0] for pe in theirs]
    for mine, reference in zip(ours, theirs):
        assert mine == without_official_sqn_default(reference)
    assert saip.encode_package(ours) == der
    assert saip.encode_package(theirs) == der          # the sqnInit fix-up applies to TCA-module values too
    assert b"".join(saip.split_pes(der)) == der


@needs_oracle
def test_ts48_v4_uses_5g_pes():
    names = [pe[0] for pe in saip.decode_package(ts48("TS48v4_SAIP2.3_BERTLV.der"))]
    assert {"df-5gs", "df-saip"} <= set(names)


@needs_oracle
@pytest.mark.parametrize("name", TS48)
def test_personalise_ts48(official, name):
    der = ts48(name)
    out = saip.personalise(der, SUB)
    pes = official_pes(official, out)
    header = pes[0][1]
    assert header["iccid"] == H("8988299000000000014F")
    mf = next(v for n, v in pes if n == "mf")
    assert file_content(mf["ef-iccid"]) == H("988892090000000010F4")
    usim = next(v for n, v in pes if n == "usim")
    assert file_content(usim["ef-imsi"]) == H("080910100000000010")
    opt_usim = next(v for n, v in pes if n == "opt-usim")
    record_length = int.from_bytes(opt_usim["ef-msisdn"][0][1]["fileDescriptor"][2:4], "big")   # 28 or 39
    assert file_content(opt_usim["ef-msisdn"]) == (
        b"\xff" * (record_length - 14) + hx("07 91 44 97 00 00 10 10 FF FF FF FF FF FF"))
    aka = next(v for n, v in pes if n == "akaParameter")["algoConfiguration"][1]
    assert (aka["key"], aka["opc"]) == (SUB.ki, SUB.opc)
    pins = [c for n, v in pes if n == "pinCodes" for c in v["pinCodes"][1]]
    assert {c["pinValue"] for c in pins if c["keyReference"] == 1} == {b"1234\xff\xff\xff\xff"}
    assert {c["pinValue"] for c in pins if c["keyReference"] == 129} == {b"5678\xff\xff\xff\xff"}
    assert {c["pinValue"] for c in pins if c["keyReference"] == 10} == {b"31415926"}
    assert {c["pinValue"] for c in pins if c["keyReference"] == 11} == {b"66666666"}   # ADM2: untouched
    puks = {c["keyReference"]: c["pukValue"] for n, v in pes if n == "pukCodes" for c in v["pukCodes"]}
    assert puks == {1: b"87654321", 129: b"11223344"}
    summary = saip.summarise(out)
    assert (summary.iccid, summary.imsi, summary.msisdn) == (SUB.iccid, SUB.imsi, SUB.msisdn)
    # every PE personalisation has nothing to write into is byte for byte the template's
    before, after = saip.split_pes(der), saip.split_pes(out)
    touched = {"header", "mf", "usim", "opt-usim", "pinCodes", "pukCodes", "akaParameter"}
    for raw_before, raw_after, (pe_name, _) in zip(before, after, pes):
        if pe_name not in touched:
            assert raw_after == raw_before, pe_name
    # the second akaParameter (ISIM) keeps its keys
    second = [v for n, v in pes if n == "akaParameter"][1]
    original = [v for n, v in official_pes(official, der) if n == "akaParameter"][1]
    assert second["algoConfiguration"] == original["algoConfiguration"]


# --- demo template -------------------------------------------------------------------------------------------------

@needs_oracle
@pytest.mark.parametrize("with_msisdn", [True, False])
def test_demo_template_decodes_with_the_tca_module(official, with_msisdn):
    der = saip.demo_template(with_msisdn=with_msisdn)
    pes = official_pes(official, der)
    names = [n for n, _ in pes]
    assert names[0] == "header" and names[-1] == "end"
    assert ("opt-usim" in names) == with_msisdn
    assert {"mf", "pukCodes", "pinCodes", "usim", "akaParameter", "securityDomain"} <= set(names)
    header = pes[0][1]
    assert (header["major-version"], header["minor-version"]) == (2, 3)
    assert {"usim", "milenage"} <= set(header["eUICC-Mandatory-services"])
    aka = next(v for n, v in pes if n == "akaParameter")["algoConfiguration"]
    assert aka[0] == "algoParameter" and aka[1]["algorithmID"] == 1
    sd = next(v for n, v in pes if n == "securityDomain")
    assert {k["keyIdentifier"] for k in sd["keyList"]} == {b"\x01", b"\x02", b"\x03"}
    assert [without_official_sqn_default(pe) for pe in pes] == saip.decode_package(der)


def test_summarise_demo_template():
    der = saip.demo_template()
    s = saip.summarise(der)
    assert s.iccid == saip.DEMO_ICCID and s.imsi == saip.DEMO_IMSI and s.msisdn is None
    assert s.profile_type == "esx demo" and s.pol1 is None
    assert s.pe_names[0] == "header" and s.pe_names[-1] == "end" and s.has_end
    assert s.size == len(der)


@needs_oracle
def test_personalise_demo_template(official):
    template = saip.demo_template()
    out = saip.personalise(template, SUB, pol1=b"\x02", profile_type="Operational M2M")
    pes = official_pes(official, out)
    header = pes[0][1]
    assert header["iccid"] == H("8988299000000000014F")
    assert header["pol"] == b"\x02" and header["profileType"] == "Operational M2M"
    files = dict(pes[1][1])
    assert file_content(files["ef-iccid"]) == H("988892090000000010F4")
    usim = next(v for n, v in pes if n == "usim")
    assert file_content(usim["ef-imsi"]) == H("080910100000000010")
    opt = next(v for n, v in pes if n == "opt-usim")
    assert opt["ef-msisdn"][1:] == [("fillFileContent", b"\xff" * 14 + hx("07 91 44 97 00 00 10 10 FF FF FF FF FF FF"))]
    aka = next(v for n, v in pes if n == "akaParameter")["algoConfiguration"][1]
    assert aka["key"] == H("000102030405060708090A0B0C0D0E0F") and aka["opc"] == H("101112131415161718191A1B1C1D1E1F")
    pins = {c["keyReference"]: c["pinValue"] for n, v in pes if n == "pinCodes" for c in v["pinCodes"][1]}
    assert pins == {1: b"1234\xff\xff\xff\xff", 10: b"31415926", 129: b"5678\xff\xff\xff\xff"}
    puks = {c["keyReference"]: c["pukValue"] for n, v in pes if n == "pukCodes" for c in v["pukCodes"]}
    assert puks == {1: b"87654321", 129: b"11223344"}
    s = saip.summarise(out)
    assert (s.iccid, s.imsi, s.msisdn, s.pol1, s.profile_type) == (
        SUB.iccid, SUB.imsi, SUB.msisdn, b"\x02", "Operational M2M")
    # the MNO-SD and end PEs are copied, not re-encoded
    assert saip.split_pes(out)[-2:] == saip.split_pes(template)[-2:]


def test_personalise_without_msisdn_file_ignores_msisdn():
    out = saip.personalise(saip.demo_template(with_msisdn=False), SUB)
    assert saip.summarise(out).msisdn is None
    assert saip.summarise(out).imsi == SUB.imsi


def test_personalise_keeps_adm1_when_not_given():
    sub = Personalisation(iccid="89882990000000000141", imsi="00101123456", msisdn=None, ki=bytes(16), opc=bytes(16))
    pes = saip.decode_package(saip.personalise(saip.demo_template(), sub))
    pins = {c["keyReference"]: c["pinValue"] for n, v in pes if n == "pinCodes" for c in v["pinCodes"][1]}
    assert pins[10] == b"88888888" and pins[1] == b"0000\xff\xff\xff\xff"
    assert saip.summarise(saip.encode_package(pes)).iccid == "89882990000000000141"


def test_personalise_msisdn_created_by_generic_file_management():
    pes = [pe for pe in saip.decode_package(saip.demo_template(with_msisdn=False))]
    gfm = ("genericFileManagement", {"gfm-header": {"identification": 50}, "fileManagementCMD": [[
        ("filePath", saip.DEMO_USIM_ADF_ID),
        ("createFCP", {"fileDescriptor": H("42210020"), "fileID": H("6F40"), "efFileSize": b"\x40",
                       "securityAttributesReferenced": b"\x03"}),
        ("fillFileOffset", 0x20),
        ("fillFileContent", b"\xee" * 0x20),      # record 2: must survive
        ("createFCP", {"fileDescriptor": H("4121"), "fileID": H("6F41"), "efFileSize": b"\x05"}),
        ("fillFileContent", b"\x01\x02\x03\x04\x05"),
    ]]})
    pes.insert(5, gfm)
    out = saip.personalise(saip.encode_package(pes), SUB)
    command = next(v for n, v in saip.decode_package(out) if n == "genericFileManagement")["fileManagementCMD"][0]
    assert command[2:4] == [("fillFileContent", saip.encode_msisdn_record(SUB.msisdn, 0x20)),
                            ("fillFileContent", b"\xee" * 0x20)]
    template_command = saip.decode_package(saip.encode_package([gfm]))[0][1]["fileManagementCMD"][0]
    assert command[:2] == template_command[:2] and command[4:] == template_command[4:]
    assert saip.summarise(out).msisdn == SUB.msisdn


def test_personalise_refuses_a_pe_it_would_alter():
    raws = saip.split_pes(saip.demo_template())
    header = raws[0]
    hl, cl = saip._outer_header(header, 0)
    content = header[hl:] + H("9F3F0100")            # an unknown field [63] appended to the header
    raws[0] = tlv(header[:1], content)
    with pytest.raises(SaipError) as err:
        saip.personalise(b"".join(raws), SUB)
    assert err.value.status == saip.BAD_VALUES


def test_personalise_copies_unknown_pes():
    raws = saip.split_pes(saip.demo_template())
    unknown = H("AC03800101")                         # tag [12] = rfu2
    raws.insert(len(raws) - 1, unknown)
    template = b"".join(raws)
    out = saip.personalise(template, SUB)
    assert unknown in out
    with pytest.raises(SaipError) as err:
        saip.decode_package(out)
    assert err.value.status == saip.PE_NOT_SUPPORTED


def test_personalise_needs_the_files_it_writes():
    pes = [pe for pe in saip.decode_package(saip.demo_template()) if pe[0] != "akaParameter"]
    with pytest.raises(SaipError) as err:
        saip.personalise(saip.encode_package(pes), SUB)
    assert err.value.status == saip.BAD_VALUES
    with pytest.raises(SaipError):
        saip.personalise(saip.split_pes(saip.demo_template())[1], SUB)   # no header first


def test_sqn_init_equal_to_the_default_is_omitted():
    pes = saip.decode_package(saip.demo_template())
    aka_index = next(i for i, (n, _) in enumerate(pes) if n == "akaParameter")
    name, value = pes[aka_index]
    plain = saip.encode_package([pes[aka_index]])
    assert saip.encode_package([(name, {**value, "sqnInit": [bytes(6)] * 32})]) == plain
    assert saip.encode_package([(name, {**value, "sqnInit": "0x000000000000"})]) == plain
    custom = [bytes(5) + bytes([i]) for i in range(32)]
    der = saip.encode_package([(name, {**value, "sqnInit": custom})])
    assert saip.decode_package(der)[0][1]["sqnInit"] == custom


# --- streaming (card side) -----------------------------------------------------------------------------------------

def packages() -> list[bytes]:
    found = [saip.demo_template(), saip.personalise(saip.demo_template(), SUB)]
    return found + [(SHARED / n).read_bytes() for n in TS48 if (SHARED / n).exists()]


@pytest.mark.parametrize("size", [1, 7, 512])
def test_package_reader_in_pieces(size):
    for der in packages():
        reader = saip.PackageReader()
        got = []
        for i in range(0, len(der), size):
            got += reader.feed(der[i:i + size])
        assert got == saip.split_pes(der)
        assert reader.pending == 0 and reader.count == len(got) and reader.consumed == len(der)


def test_package_reader_state_round_trip_mid_stream():
    der = packages()[-1]
    reader = saip.PackageReader()
    got = reader.feed(der[:len(der) // 2 + 3])
    assert reader.pending > 0
    restored = saip.PackageReader.from_state(json.loads(json.dumps(reader.state())))
    assert restored.pending == reader.pending and restored.count == reader.count
    got += restored.feed(der[len(der) // 2 + 3:])
    assert got == saip.split_pes(der)
    assert restored.pending == 0


def test_package_reader_rejects_foreign_bytes_and_huge_pes():
    with pytest.raises(SaipError) as err:
        saip.PackageReader().feed(H("3003020100"))
    assert err.value.status == saip.INVALID_REQUEST_FORMAT
    with pytest.raises(SaipError) as err:
        saip.PackageReader(max_pe_size=1000).feed(hx("A0 82 1000"))
    assert err.value.status == saip.NOT_ENOUGH_MEMORY
    reader = saip.PackageReader()
    assert reader.feed(H("BF")) == [] and reader.feed(H("21")) == [] and reader.pending == 2


# --- malformed input -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("der", [
    saip.demo_template()[:-1],              # truncated
    saip.demo_template()[:3],               # truncated inside the first header
    H("0001020304"),                        # garbage
    H("300302010005"),                      # a universal SEQUENCE, not a ProfileElement
    H("A080A0030201000000"),                # indefinite length
    H("A003FFFFFF"),                        # a header tag whose content is garbage
    hx("A0 85 0100000000"),                 # a 5-byte length field
], ids=["truncated", "truncated-header", "garbage", "wrong-tag", "indefinite", "bad-content", "long-length"])
def test_malformed_packages(der):
    with pytest.raises(SaipError) as err:
        saip.decode_package(der)
    assert err.value.status == saip.INVALID_REQUEST_FORMAT
    with pytest.raises(SaipError) as err:
        saip.summarise(der)
    assert err.value.status == saip.INVALID_REQUEST_FORMAT


def test_summarise_needs_header_first_and_end_last():
    raws = saip.split_pes(saip.demo_template())
    with pytest.raises(SaipError):
        saip.summarise(b"".join(raws[1:]))
    with pytest.raises(SaipError):
        saip.summarise(b"".join(raws[:-1]))
    assert saip.summarise(b"".join(raws[:-1]), require_end=False).has_end is False
    with pytest.raises(SaipError):  # an end PE that is not last
        saip.summarise(b"".join(raws[:2] + raws[-1:] + raws[2:]), require_end=False)


def test_validate_pe():
    raws = saip.split_pes(saip.demo_template())
    name, value = saip.validate_pe(raws[0])
    assert name == "header" and value["major-version"] == 2
    with pytest.raises(SaipError) as err:
        saip.validate_pe(raws[0] + raws[1])
    assert err.value.status == saip.INVALID_REQUEST_FORMAT
    with pytest.raises(SaipError) as err:
        saip.validate_pe(H("AC03800101"))              # rfu2: a PE type we do not support
    assert err.value.status == saip.PE_NOT_SUPPORTED
    # akaParameter (identification 7) whose algoConfiguration is an unknown alternative [2]
    with pytest.raises(SaipError) as err:
        saip.validate_pe(hx("A4 09  A0 03 81 01 07  A1 02 82 00"))
    assert (err.value.status, err.value.identification) == (saip.FEATURE_NOT_SUPPORTED, 7)
    assert err.value.pe_status() == PeStatus(saip.FEATURE_NOT_SUPPORTED, identification=7)
    # a header of a future major version
    pes = saip.decode_package(raws[0])
    future = saip.encode_package([("header", {**pes[0][1], "major-version": 4})])
    with pytest.raises(SaipError) as err:
        saip.validate_pe(future)
    assert err.value.status == saip.UNSUPPORTED_PROFILE_VERSION


# --- EUICCResponse -------------------------------------------------------------------------------------------------

def test_euicc_response_round_trip():
    statuses = [PeStatus(saip.PE_OK, identification=1), PeStatus(saip.BAD_VALUES, 7, 2, 130),
                PeStatus(0x6A80)]
    der = saip.encode_euicc_response(statuses, aborted=True, message="bad K length")
    assert saip.decode_euicc_response(der) == (statuses, True, "bad K length")
    ok = saip.encode_euicc_response([PeStatus(saip.PE_OK)])
    assert ok == hx("30 07 A0 05 30 03 80 01 00")
    assert saip.decode_euicc_response(ok) == ([PeStatus(0)], False, None)
    with pytest.raises(SaipError):
        saip.encode_euicc_response([], message="x")
    with pytest.raises(SaipError):
        PeStatus(saip.PE_OK, identification=40000)
    with pytest.raises(SaipError) as err:
        saip.decode_euicc_response(ok + b"\x00")
    assert err.value.status == saip.INVALID_REQUEST_FORMAT
    with pytest.raises(SaipError):
        saip.decode_euicc_response(H("A003800100"))


@needs_oracle
def test_euicc_response_matches_the_tca_module(official):
    statuses = [PeStatus(saip.PE_OK, identification=1), PeStatus(saip.INVALID_PARAMETER, 12, 3, 4)]
    der = saip.encode_euicc_response(statuses, aborted=True, message="aborted at PE 12")
    assert official.decode("EUICCResponse", der) == {
        "peStatus": [{"status": 0, "identification": 1},
                     {"status": 6, "identification": 12, "additional-information": 3, "offset": 4}],
        "profileInstallationAborted": None, "statusMessage": "aborted at PE 12"}
    theirs = official.encode("EUICCResponse", {"peStatus": [{"status": 31, "identification": 1}]})
    assert saip.decode_euicc_response(theirs) == ([PeStatus(31, 1)], False, None)
