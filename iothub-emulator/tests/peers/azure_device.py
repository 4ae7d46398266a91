"""A device written with Microsoft's azure-iot-device SDK against the
emulator. The SDK's ports are fixed (8883 for MQTT, 443 for WebSocket):
paho's Client.connect is wrapped to use the emulator's ports instead.

Environment: IOTHUB_CONNECTION_STRING, IOTHUB_CA (CA PEM path),
IOTHUB_PORT (MQTT/TLS), IOTHUB_WS_PORT (MQTT/WebSocket/TLS),
IOTHUB_WEBSOCKETS=1 for a short run over WebSocket.
"""
import json
import os
import sys
import threading

import paho.mqtt.client as mqtt

PORTS = {8883: int(os.environ["IOTHUB_PORT"]), 443: int(os.environ["IOTHUB_WS_PORT"])}
_connect = mqtt.Client.connect


def _redirected_connect(self, host, port=1883, *args, **kwargs):
    return _connect(self, host, PORTS.get(port, port), *args, **kwargs)


mqtt.Client.connect = _redirected_connect

from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse  # noqa: E402

websockets = os.environ.get("IOTHUB_WEBSOCKETS") == "1"
with open(os.environ["IOTHUB_CA"]) as f:
    ca = f.read()
client = IoTHubDeviceClient.create_from_connection_string(
    os.environ["IOTHUB_CONNECTION_STRING"],
    server_verification_cert=ca,
    websockets=websockets,
)


_out_lock = threading.Lock()


def out(*words):
    # One write per line: the SDK runs handlers on several threads, and
    # print writes its words separately, so lines could interleave.
    with _out_lock:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()


client.connect()
out("CONNECTED", "websockets" if websockets else "tcp")
msg = Message('{"hello": "from azure-iot-device"}')
msg.custom_properties["source"] = "azure-sdk"
msg.content_type = "application/json"
msg.content_encoding = "utf-8"
client.send_message(msg)
out("SENT")
twin = client.get_twin()
out("TWIN", json.dumps(twin, sort_keys=True))
if websockets:
    client.shutdown()
    out("DONE")
    sys.exit(0)

client.patch_twin_reported_properties({"sdk": "python", "nested": {"a": 1}})
out("PATCHED")

got_desired, got_method, got_c2d = threading.Event(), threading.Event(), threading.Event()


def on_desired(patch):
    out("DESIRED", json.dumps(patch, sort_keys=True))
    got_desired.set()


def on_method(request):
    out("METHOD", request.name, json.dumps(request.payload, sort_keys=True))
    response = MethodResponse.create_from_method_request(
        request, 201, {"echo": request.payload}
    )
    client.send_method_response(response)
    got_method.set()


def on_message(message):
    out("C2D", message.data.decode("utf-8"), json.dumps(message.custom_properties, sort_keys=True))
    got_c2d.set()


client.on_twin_desired_properties_patch_received = on_desired
client.on_method_request_received = on_method
client.on_message_received = on_message
out("READY")
ok = all(e.wait(30) for e in (got_desired, got_method, got_c2d))
client.shutdown()
out("DONE" if ok else "TIMEOUT")
sys.exit(0 if ok else 1)
