"""Instance documents (SOAP body elements) used by the validity tests.

All values are invented test data.
"""
from .conftest import DS, RPS

EID = '89049032000001000000000012345678'
ICCID_1 = '8933010000000000017'
ICCID_2 = '8944200000000000026'


def body(element, inner, extra_ns=''):
    return '<%s xmlns="%s"%s>%s</%s>' % (element, RPS, extra_ns, inner, element)


def status(value='EXECUTED_SUCCESS', subject=None, reason=None, message=None):
    data = ''
    if subject:
        data = '<StatusCodeData><Subject>%s</Subject><Reason>%s</Reason>%s</StatusCodeData>' % (
            subject, reason, '<Message>%s</Message>' % message if message else '')
    return '<FunctionExecutionStatus><Status>%s</Status>%s</FunctionExecutionStatus>' % (value, data)


SIGNATURE = (
    '<EumSignature xmlns:ds="%s">'
    '<ds:SignedInfo>'
    '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
    '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/>'
    '<ds:Reference URI="">'
    '<ds:Transforms>'
    '<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116">'
    '<ds:XPath>ancestor-or-self::*[local-name()=\'EumSignedInfo\']</ds:XPath>'
    '</ds:Transform>'
    '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
    '</ds:Transforms>'
    '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
    '<ds:DigestValue>q1Jm8r2WZ0b1vKk3n8uQy1l5rjv4bZB0o2hKq3mYgqY=</ds:DigestValue>'
    '</ds:Reference>'
    '</ds:SignedInfo>'
    '<ds:SignatureValue>MEUCIQDx2m0J5lD0yN3mQ0rM9lS0Ck1mO1Zb1X9Kq3m8fQ7kRwIgQ2v0b7n3YwB6Y1mZx5cN8mQ2bL4tR7yW1v9e3o0kJ3U=</ds:SignatureValue>'
    '<ds:KeyInfo><ds:KeyName>EUM test key</ds:KeyName>'
    '<ds:X509Data><ds:X509Certificate>MIIBszCCAVmgAwIBAgIUQ1Jm8r2WZ0b1vKk3n8uQy1l5rjswCgYIKoZIzj0EAwI=</ds:X509Certificate>'
    '</ds:X509Data></ds:KeyInfo>'
    '</EumSignature>' % DS)

ECASD = (
    '<Ecasd>'
    '<Aid>A0000005591010FFFFFFFF8900000200</Aid>'
    '<Tar>000002</Tar>'
    '<Sin>4F534531</Sin>'
    '<Sdin>0102030405060708</Sdin>'
    '<Role>ECASD</Role>'
    '<Keyset><Version>115</Version><Type>CA</Type>'
    '<Certificate><Index>1</Index><CaId>1.3.6.1.4.1.31746.1.1</CaId>'
    '<Value>7F2181E89301015F200A43492D544553542D31</Value></Certificate>'
    '</Keyset>'
    '</Ecasd>')

ISD_R = (
    '<Isd-r>'
    '<Aid>A0000005591010FFFFFFFF8900000100</Aid>'
    '<Tar>000001</Tar>'
    '<Sin>4F534531</Sin>'
    '<Sdin>0102030405060709</Sdin>'
    '<Role>ISD-R</Role>'
    '<Keyset><Version>1</Version><Type>SCP80</Type><Cntr>5</Cntr>'
    '<Key kcv="A1B2C3"><Index>1</Index><KeyComponents type="88" value="000102030405060708090A0B0C0D0E0F"/></Key>'
    '<Key kcv="D4E5F6"><Index>2</Index><KeyComponents type="88" value="101112131415161718191A1B1C1D1E1F"/></Key>'
    '</Keyset>'
    '<Keyset><Version>64</Version><Type>SCP81</Type>'
    '<Key kcv="0A0B0C"><Index>1</Index><KeyComponents type="85" value="2021222324252627"/></Key>'
    '</Keyset>'
    '</Isd-r>')


def profile(iccid, aid, state, rules):
    pol2 = ''.join('<Rule><Subject>PROFILE</Subject><Action>%s</Action><Qualification>%s</Qualification></Rule>'
                   % r for r in rules)
    return (
        '<ProfileInfo>'
        '<Iccid>%s</Iccid><Isd-p-aid>%s</Isd-p-aid><Mno-id>1.3.6.1.4.1.99999.30</Mno-id>'
        '<FallbackAttribute>%s</FallbackAttribute>'
        '<SubscriptionAddress><Imsi>208011234567890</Imsi><Msisdn>33612345678</Msisdn></SubscriptionAddress>'
        '<State>%s</State><Smdp-id>1.3.6.1.4.1.99999.20</Smdp-id><ProfileType>3G_16K</ProfileType>'
        '<AllocatedMemory>65536</AllocatedMemory><FreeMemory>1024</FreeMemory>'
        '<pol2>%s</pol2>'
        '</ProfileInfo>' % (iccid, aid, 'true' if state == 'Enabled' else 'false', state, pol2))


AUDIT_TRAIL = (
    '<AuditTrail>'
    '<Record><Eid>%s</Eid><Smsr-id>1.3.6.1.4.1.99999.2</Smsr-id><OperationDate>2024-03-01T12:00:00Z</OperationDate>'
    '<OperationType>0200</OperationType><RequesterId>1.3.6.1.4.1.99999.30</RequesterId>'
    '<OperationExecutionStatus><Status>EXECUTED_SUCCESS</Status></OperationExecutionStatus>'
    '<Isd-p-aid>A0000005591010FFFFFFFF8900001000</Isd-p-aid><Iccid>%s</Iccid></Record>'
    '<Record><Eid>%s</Eid><Smsr-id>1.3.6.1.4.1.99999.2</Smsr-id><OperationDate>2024-03-01T12:00:05Z</OperationDate>'
    '<OperationType>0002</OperationType><Iccid>%s</Iccid><Imei>3534560123456789</Imei></Record>'
    '</AuditTrail>' % (EID, ICCID_1, EID, ICCID_1))


def eis(full=True):
    parts = [
        '<EumSignedInfo>'
        '<Eid>%s</Eid><Eum-id>1.3.6.1.4.1.99999.1</Eum-id>'
        '<ProductionDate>2023-11-02T09:00:00Z</ProductionDate>'
        '<PlatformType>esx-test-os</PlatformType><PlatformVersion>1.2.0</PlatformVersion>'
        '<Isd-p-loadfile-aid>A0000005591010FFFFFFFF8900000D00</Isd-p-loadfile-aid>'
        '<Isd-p-module-aid>A0000005591010FFFFFFFF8900000E00</Isd-p-module-aid>'
        '%s'
        '<EuiccCapabilities><CattpSupport>false</CattpSupport><HttpSupport>true</HttpSupport>'
        '<HttpVersion>1.1.0</HttpVersion><SecurePacketVersion>12.1.0</SecurePacketVersion>'
        '<RemoteProvisioningVersion>3.2.0</RemoteProvisioningVersion></EuiccCapabilities>'
        '</EumSignedInfo>' % (EID, ECASD),
        SIGNATURE,
        '<RemainingMemory>512000</RemainingMemory><AvailableMemoryForProfiles>480000</AvailableMemoryForProfiles>',
    ]
    if full:
        parts.append('<LastAuditDate>2024-03-01T12:00:10Z</LastAuditDate>')
    parts.append('<Smsr-id>1.3.6.1.4.1.99999.2</Smsr-id>')
    parts.append(profile(ICCID_1, 'A0000005591010FFFFFFFF8900001000', 'Enabled',
                         [('DISABLE', 'Not-Allowed'), ('DELETE', 'Not-Allowed')]))
    if full:
        parts.append(profile(ICCID_2, 'A0000005591010FFFFFFFF8900001100', 'Disabled',
                             [('DISABLE', 'Auto-Delete')]))
    parts.append(ISD_R)
    if full:
        parts.append(AUDIT_TRAIL)
        parts.append('<AdditionalProperties><Property key="formFactor" value="MFF2"/>'
                     '<Property key="note" value=""/></AdditionalProperties>')
    return '<Eis>%s</Eis>' % ''.join(parts)


REQUEST_HEAD = '<FunctionCallIdentifier>fc-0001</FunctionCallIdentifier><ValidityPeriod>3600</ValidityPeriod>'

VALID = {
    'ES1-RegisterEISRequest': body('ES1-RegisterEISRequest', REQUEST_HEAD + eis()),
    'ES1-RegisterEISResponse': body('ES1-RegisterEISResponse', status()),
    'ES4-GetEISResponse failed': body('ES4-GetEISResponse',
                                      '<ProcessingStart>2024-03-01T12:00:00Z</ProcessingStart>'
                                      '<ProcessingEnd>2024-03-01T12:00:01Z</ProcessingEnd>'
                                      + status('FAILED', '8.1.1', '3.8', 'Unknown eUICC')),
    'ES4-GetEISResponse full': body('ES4-GetEISResponse', status() + eis()),
    'ES2-DownloadProfileRequest': body('ES2-DownloadProfileRequest',
                                       REQUEST_HEAD + '<Eid>%s</Eid><SmSr-id>1.3.6.1.4.1.99999.2</SmSr-id>'
                                       '<ProfileType>3G_16K</ProfileType><Iccid>%s</Iccid>'
                                       '<EnableProfile>true</EnableProfile>' % (EID, ICCID_2)),
    'ES2-UpdateSubscriptionAddressRequest': body(
        'ES2-UpdateSubscriptionAddressRequest',
        '<FunctionCallIdentifier>x</FunctionCallIdentifier><Eid>%s</Eid><Smsr-id>1.2.3</Smsr-id><Iccid>%s</Iccid>'
        '<newSubscriptionAddress><Msisdn>447700900123</Msisdn></newSubscriptionAddress>' % (EID, ICCID_1)),
    'ES3-CreateISDPResponse': body('ES3-CreateISDPResponse',
                                   status('EXECUTED_WITHWARNING', '8.4', '3.7')
                                   + '<Isd-p-aid>A0000005591010FFFFFFFF8900001100</Isd-p-aid>'
                                   '<EuiccResponseData>9000</EuiccResponseData>'),
    'ES3-HandleSMSRChangeNotification': body('ES3-HandleSMSRChangeNotification',
                                             eis(full=False) + '<Mno-id>1.3.6.1.4.1.99999.30</Mno-id>'
                                             '<completionTimestamp>2024-03-02T08:00:00Z</completionTimestamp>'),
    'ES4-AuditEISRequest': body('ES4-AuditEISRequest',
                                REQUEST_HEAD + '<Eid>%s</Eid><Iccid>%s</Iccid><Iccid>%s</Iccid>'
                                % (EID, ICCID_1, ICCID_2)),
    'ES4-HandleProfileEnabledNotification': body(
        'ES4-HandleProfileEnabledNotification',
        '<Eid>%s</Eid><Iccid>%s</Iccid><CompletionTimestamp>2024-03-02T08:00:00+01:00</CompletionTimestamp>'
        % (EID, ICCID_1)),
}


RSA_KEY_INFO = ('<ds:KeyInfo><ds:KeyValue><ds:RSAKeyValue><ds:Modulus>xA7SEU+e0yQH5rm9kbCDN9o3aPIo7HbP</ds:Modulus>'
                '<ds:Exponent>AQAB</ds:Exponent></ds:RSAKeyValue></ds:KeyValue></ds:KeyInfo>')

VALID['ES1-RegisterEISRequest, RSA key value'] = body(
    'ES1-RegisterEISRequest',
    REQUEST_HEAD + eis().replace(SIGNATURE[SIGNATURE.index('<ds:KeyInfo>'):SIGNATURE.index('</EumSignature>')],
                                 RSA_KEY_INFO))
VALID['ES1-RegisterEISRequest, signature without KeyInfo'] = body(
    'ES1-RegisterEISRequest',
    REQUEST_HEAD + eis().replace(SIGNATURE[SIGNATURE.index('<ds:KeyInfo>'):SIGNATURE.index('</EumSignature>')], ''))


def _too_many_keys():
    keys = '<Key kcv="00"><Index>1</Index><KeyComponents type="88" value="00"/></Key>' * 129
    return body('ES1-RegisterEISRequest',
                REQUEST_HEAD + eis().replace('<Keyset><Version>64</Version><Type>SCP81</Type>',
                                             '<Keyset><Version>64</Version><Type>SCP81</Type>' + keys))


INVALID = {
    'bad ICCID pattern': body('ES4-EnableProfileRequest',
                              REQUEST_HEAD + '<Eid>%s</Eid><Iccid>8833010000000000017</Iccid>' % EID),
    'wrong order': body('ES2-DeleteProfileRequest',
                        REQUEST_HEAD + '<Eid>%s</Eid><Smsr-id>1.2.3</Smsr-id><Iccid>%s</Iccid>' % (EID, ICCID_1)),
    'missing Eid': body('ES3-GetEISRequest', REQUEST_HEAD),
    'missing Eid in EIS': body('ES1-RegisterEISRequest', REQUEST_HEAD + eis().replace('<Eid>%s</Eid>' % EID, '', 1)),
    'Smsr-id spelled as in other functions': body(
        'ES2-EnableProfileRequest',
        REQUEST_HEAD + '<Eid>%s</Eid><Smsr-id>1.2.3</Smsr-id><Iccid>%s</Iccid>' % (EID, ICCID_1)),
    'CompletionTimestamp capitalised on ES3 SM-SR change': body(
        'ES3-HandleSMSRChangeNotification',
        eis(full=False) + '<Mno-id>1.2.3</Mno-id><CompletionTimestamp>2024-03-02T08:00:00Z</CompletionTimestamp>'),
    'prose status spelling': body('ES4-EnableProfileResponse', status('Executed-Success')),
    'pol2 missing on ES4': body('ES4-UpdatePolicyRulesRequest',
                                REQUEST_HEAD + '<Eid>%s</Eid><Iccid>%s</Iccid>' % (EID, ICCID_1)),
    'more than 128 keys in a key set': _too_many_keys(),
    'Isd-p-aid missing in CreateISDP result': body('ES3-CreateISDPResponse', status('FAILED', '8.1.1', '3.8')),
    'EumSignature without SignatureValue': body(
        'ES1-RegisterEISRequest',
        REQUEST_HEAD + eis().replace(SIGNATURE[SIGNATURE.index('<ds:SignatureValue>'):SIGNATURE.index('<ds:KeyInfo>')],
                                     '')),
    'EumSignature with undeclared canonicalization parameter': body(
        'ES1-RegisterEISRequest',
        REQUEST_HEAD + eis().replace(
            '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>',
            '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#">'
            '<ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" PrefixList="ds"/>'
            '</ds:CanonicalizationMethod>')),
    'ValidityPeriod zero': body('ES3-GetEISRequest',
                                '<FunctionCallIdentifier>x</FunctionCallIdentifier><ValidityPeriod>0</ValidityPeriod>'
                                '<Eid>%s</Eid>' % EID),
}


# ------------------------------------------------------------------ ES7 (judged by ours and the official v4 schema)

# invented values of the right sizes: CERT.SR.ECDSA ('7F21' data object), a P-256 ephemeral public key
# (uncompressed point, '04' || X || Y), an ECDSA signature (r || s), a 16-byte HostID, challenge, random, receipt
SMSR_CERTIFICATE = '7F2181DB' + '5A' * 0xDB  # tag, length, invented content
EPHEMERAL_PUBLIC_KEY = '04' + '6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296' \
                       '4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5'
SIGNATURE_R_S = 'D1' * 32 + '2E' * 32
HOST_ID = '0123456789ABCDEF0123456789ABCDEF'
RANDOM_CHALLENGE = '5E1B2A3C4D5E6F708192A3B4C5D6E7F8'
DERIVATION_RANDOM = '9F8E7D6C5B4A39281706F5E4D3C2B1A0'
RECEIPT = '00112233445566778899AABBCCDDEEFF'


def key_set_request(kvn='2', counter='-1', length='ECC-256', scenario='11', host_id=HOST_ID,
                    signature=SIGNATURE_R_S):
    parts = ['<Eid>%s</Eid>' % EID, '<KeyVersionNumber>%s</KeyVersionNumber>' % kvn,
             '<InitialSequenceCounter>%s</InitialSequenceCounter>' % counter,
             '<ECCKeyLength>%s</ECCKeyLength>' % length, '<ScenarioParameter>%s</ScenarioParameter>' % scenario,
             '<HostId>%s</HostId>' % host_id, '<EphemeralPublicKey>%s</EphemeralPublicKey>' % EPHEMERAL_PUBLIC_KEY]
    if signature is not None:
        parts.append('<Signature>%s</Signature>' % signature)
    return body('ES7-CreateAdditionalKeySetRequest', REQUEST_HEAD + ''.join(parts))


PROCESSING = ('<ProcessingStart>2024-03-02T08:00:00Z</ProcessingStart>'
              '<ProcessingEnd>2024-03-02T08:00:41Z</ProcessingEnd>')

ES7_VALID = {
    'ES7-HandoverEUICCRequest': body('ES7-HandoverEUICCRequest', REQUEST_HEAD + eis()),
    'ES7-HandoverEUICCResponse': body('ES7-HandoverEUICCResponse', PROCESSING + status()),
    'ES7-HandoverEUICCResponse, preparation not performed': body(
        'ES7-HandoverEUICCResponse', PROCESSING + status('FAILED', '8.1.1', '3.9', 'PrepareSMSRChange not received')),
    'ES7-AuthenticateSMSRRequest': body(
        'ES7-AuthenticateSMSRRequest',
        REQUEST_HEAD + '<Eid>%s</Eid><SmsrCertificate>%s</SmsrCertificate>' % (EID, SMSR_CERTIFICATE)),
    'ES7-AuthenticateSMSRResponse': body(
        'ES7-AuthenticateSMSRResponse', PROCESSING + status() + '<RandomChallenge>%s</RandomChallenge>' % RANDOM_CHALLENGE),
    'ES7-AuthenticateSMSRResponse, certificate refused, empty challenge': body(
        'ES7-AuthenticateSMSRResponse', PROCESSING + status('FAILED', '8.5.3', '6.3') + '<RandomChallenge/>'),
    'ES7-CreateAdditionalKeySetRequest': key_set_request(),
    'ES7-CreateAdditionalKeySetRequest, no HostID, a counter, KVN 127, ECC-521': key_set_request(
        kvn='127', counter='0', length='ECC-521', scenario='9', host_id=''),
    'ES7-CreateAdditionalKeySetRequest, scenario parameter -128': key_set_request(scenario='-128'),
    'ES7-CreateAdditionalKeySetResponse': body(
        'ES7-CreateAdditionalKeySetResponse',
        PROCESSING + status() + '<DerivationRandom>%s</DerivationRandom><Receipt>%s</Receipt>'
        % (DERIVATION_RANDOM, RECEIPT)),
    'ES7-CreateAdditionalKeySetResponse, failed, both empty': body(
        'ES7-CreateAdditionalKeySetResponse',
        status('FAILED', '8.1.1', '3.9') + '<DerivationRandom></DerivationRandom><Receipt/>'),
}

ES7_INVALID = {
    'KVN 0': key_set_request(kvn='0'),
    'KVN 128': key_set_request(kvn='128'),
    'ECC key length in another notation': key_set_request(length='P-256'),
    'ECC key length 255': key_set_request(length='ECC-255'),
    'scenario parameter out of xs:byte': key_set_request(scenario='137'),
    'scenario parameter in hex': key_set_request(scenario='0B'),
    'HostId with an odd number of digits': key_set_request(host_id='ABC'),
    'counter not an integer': key_set_request(counter='FFFF'),
    'Signature missing': key_set_request(signature=None),
    'AuthenticateSMSR with the v3 Eis': body('ES7-AuthenticateSMSRRequest',
                                             REQUEST_HEAD + eis() + '<SmsrCertificate>%s</SmsrCertificate>'
                                             % SMSR_CERTIFICATE),
    'AuthenticateSMSR without certificate': body('ES7-AuthenticateSMSRRequest', REQUEST_HEAD + '<Eid>%s</Eid>' % EID),
    'RandomChallenge missing': body('ES7-AuthenticateSMSRResponse', status('FAILED', '8.5.3', '6.3')),
    'Receipt before DerivationRandom': body(
        'ES7-CreateAdditionalKeySetResponse',
        status() + '<Receipt>%s</Receipt><DerivationRandom>%s</DerivationRandom>' % (RECEIPT, DERIVATION_RANDOM)),
    'HandoverEUICC with an Eid instead of the EIS': body('ES7-HandoverEUICCRequest',
                                                         REQUEST_HEAD + '<Eid>%s</Eid>' % EID),
    'HandoverEUICC result with a body of its own': body('ES7-HandoverEUICCResponse',
                                                        status() + '<Eis/>'),
}

# v3 only: judged by ours and the official v3 ES7 schema
ES7_V3_VALID = {
    'ES7-HandleSMSRChangeNotification': body(
        'ES7-HandleSMSRChangeNotification',
        eis() + '<CompletionTimestamp>2024-03-02T08:01:00Z</CompletionTimestamp>'),
}

# The v4 EIS makes Isd-r optional; ours keeps it mandatory (wsdl/README.md)
HANDOVER_WITHOUT_ISD_R = body('ES7-HandoverEUICCRequest', REQUEST_HEAD + eis().replace(ISD_R, ''))
