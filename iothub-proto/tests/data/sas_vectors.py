#!/usr/bin/env python3
"""Independent SAS token test vectors for iothub-proto.

Python 3 standard library only. Prints JSON on stdout; regenerate with

    python3 iothub-proto/tests/data/sas_vectors.py > iothub-proto/tests/data/sas_vectors.json

Token format (docs "Control access to IoT Hub with SAS tokens"):

    SharedAccessSignature sr={quote(resourceUri)}&sig={quote(base64(hmac))}&se={expiry}[&skn={quote(keyName)}]
    hmac = HMAC-SHA256(key = base64decode(SharedAccessKey),
                       message = quote(resourceUri) + "\n" + str(expiry))

quote(s) is urllib.parse.quote(s, safe=""): RFC 3986 unreserved characters
(A-Z a-z 0-9 - . _ ~) are kept, everything else is %XX with uppercase hex.
"""

import base64
import hashlib
import hmac
import json
import sys
from urllib.parse import quote


def test_key(label, length=32):
    """A deterministic, distinct key per case (never a real secret)."""
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(b"iothub-rs sas vector key %d %s" % (counter, label.encode())).digest()
        counter += 1
    return base64.b64encode(out[:length]).decode("ascii")


def sign(key_b64, message):
    return hmac.new(base64.b64decode(key_b64), message.encode("utf-8"), hashlib.sha256).digest()


def sas_token(resource_uri, key_b64, expiry, key_name=None):
    sr = quote(resource_uri, safe="")
    signature = base64.b64encode(sign(key_b64, sr + "\n" + str(expiry))).decode("ascii")
    token = "SharedAccessSignature sr={}&sig={}&se={}".format(sr, quote(signature, safe=""), expiry)
    if key_name is not None:
        token += "&skn=" + quote(key_name, safe="")
    return token, signature


def hub_resource_uri(host, device_id, module_id=None):
    uri = "{}/devices/{}".format(host, device_id)
    if module_id is not None:
        uri += "/modules/{}".format(module_id)
    return uri


def hub_case(name, host, device_id, module_id, key_b64, expiry, key_name=None):
    resource_uri = hub_resource_uri(host, device_id, module_id)
    token, signature = sas_token(resource_uri, key_b64, expiry, key_name)
    return {
        "name": name,
        "kind": "hub",
        "host_name": host,
        "device_id": device_id,
        "module_id": module_id,
        "resource_uri": resource_uri,
        "key_base64": key_b64,
        "key_name": key_name,
        "expiry_unix_secs": expiry,
        "signature_base64": signature,
        "token": token,
    }


def derive_group_key(group_key_b64, registration_id):
    """Group enrollment: the device key is HMAC-SHA256(group key, registration id)."""
    return base64.b64encode(sign(group_key_b64, registration_id)).decode("ascii")


def dps_username(id_scope, registration_id, api_version, client_version=None):
    """{idScope}/registrations/{registrationId}/api-version={v}[&ClientVersion={quote(ua)}]"""
    username = "{}/registrations/{}/api-version={}".format(id_scope, registration_id, quote(api_version, safe=""))
    if client_version is not None:
        username += "&ClientVersion=" + quote(client_version, safe="")
    return username


def dps_case(name, id_scope, registration_id, group_key_b64, expiry,
             api_version="2021-06-01", client_version=None):
    device_key_b64 = derive_group_key(group_key_b64, registration_id)
    resource_uri = "{}/registrations/{}".format(id_scope, registration_id)
    token, signature = sas_token(resource_uri, device_key_b64, expiry, "registration")
    return {
        "name": name,
        "kind": "dps",
        "id_scope": id_scope,
        "registration_id": registration_id,
        "group_key_base64": group_key_b64,
        "resource_uri": resource_uri,
        "key_base64": device_key_b64,
        "key_name": "registration",
        "expiry_unix_secs": expiry,
        "signature_base64": signature,
        "token": token,
        # The CONNECT fields of a DPS registration.
        "client_id": registration_id,
        "api_version": api_version,
        "client_version": client_version,
        "username": dps_username(id_scope, registration_id, api_version, client_version),
    }


def derivation(name, group_key_b64, registration_id):
    return {
        "name": name,
        "group_key_base64": group_key_b64,
        "registration_id": registration_id,
        "device_key_base64": derive_group_key(group_key_b64, registration_id),
    }


HOST = "contoso.azure-devices.net"

CASES = [
    hub_case("device", HOST, "MyDevice01", None, test_key("device"), 1700000000),
    hub_case("module", HOST, "MyDevice01", "module1", test_key("module"), 1700003600),
    hub_case("device with skn", HOST, "MyDevice01", None, test_key("policy"), 1700007200, "device"),
    hub_case("skn needing encoding", HOST, "dev-2", None, test_key("policy 2"), 1712345678, "my policy/1"),
    dps_case("dps registration", "0ne00000A0A", "my-registration-01", test_key("dps group"), 1700010800),
    # Expiry pinned so that the signature contains '+', '/' and '=' (asserted below).
    hub_case("signature with + / =", HOST, "sig-chars", None, test_key("sig chars"), 1700000001),
    # Every character a device or module id may hold.
    hub_case("special id characters", HOST, "aZ09-.%_*?!(),:=@$'", "m=(1)?", test_key("special"), 1800000000),
    # Longer than the SHA-256 block: HMAC hashes the key first.
    hub_case("80-byte key", HOST, "long-key", None, test_key("long key", 80), 4102444800),
    # The portal's group keys are 64 bytes; the documented api-version and a user agent.
    dps_case("dps group, 64-byte key, old api-version", "0ne00ABCDEF", "sensor-042.a_b:c-",
             test_key("dps group 64", 64), 1712345678, "2019-03-31", "iothub-rs/0.1 (linux; x86_64)"),
]

# Group-enrollment key derivation alone: several registration ids under one
# group key, and keys of other sizes.
GROUP_KEY = test_key("derivation group", 64)
DERIVATIONS = [
    derivation("short id", GROUP_KEY, "a"),
    derivation("typical id", GROUP_KEY, "thermostat-17"),
    derivation("every allowed character", GROUP_KEY, "AZaz09-._:-"),
    derivation("128-character id", GROUP_KEY, "r" * 127 + "9"),
    derivation("32-byte group key", test_key("derivation group 32"), "thermostat-17"),
    derivation("100-byte group key", test_key("derivation group 100", 100), "thermostat-17"),
]


def main():
    signature = next(c for c in CASES if c["name"] == "signature with + / =")["signature_base64"]
    assert all(ch in signature for ch in "+/="), signature
    assert len(base64.b64decode(next(c for c in CASES if c["name"] == "80-byte key")["key_base64"])) == 80
    assert len({d["device_key_base64"] for d in DERIVATIONS}) == len(DERIVATIONS)
    json.dump({"generator": "tests/data/sas_vectors.py", "cases": CASES, "derivations": DERIVATIONS},
              sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
