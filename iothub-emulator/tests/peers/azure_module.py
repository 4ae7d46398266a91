"""Two IoT Edge modules written with Microsoft's azure-iot-device SDK
(IoTHubModuleClient) against the emulator: a "filter" module that reads
its twin, reports, answers a direct method, receives an input message and
sends an output message, and a "sink" module that receives that output
through the emulator's route. The SDK's MQTT port is fixed (8883): paho's
Client.connect is wrapped to use the emulator's port instead.

Environment: IOTHUB_MODULE_CONNECTION_STRING (the filter module),
IOTHUB_SINK_CONNECTION_STRING (the sink module), IOTHUB_CA (CA PEM path),
IOTHUB_PORT (MQTT/TLS).
"""
import json
import os
import sys
import threading

import paho.mqtt.client as mqtt

PORTS = {8883: int(os.environ["IOTHUB_PORT"])}
_connect = mqtt.Client.connect


def _redirected_connect(self, host, port=1883, *args, **kwargs):
    return _connect(self, host, PORTS.get(port, port), *args, **kwargs)


mqtt.Client.connect = _redirected_connect

from azure.iot.device import IoTHubModuleClient, Message, MethodResponse  # noqa: E402

with open(os.environ["IOTHUB_CA"]) as f:
    ca = f.read()


_out_lock = threading.Lock()


def out(*words):
    # One write per line: the SDK runs handlers on several threads.
    with _out_lock:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()


def props(message):
    return json.dumps(message.custom_properties, sort_keys=True)


got_routed = threading.Event()
sink = IoTHubModuleClient.create_from_connection_string(
    os.environ["IOTHUB_SINK_CONNECTION_STRING"], server_verification_cert=ca
)


def on_sink_message(message):
    out("SINK", message.input_name, message.data.decode("utf-8"), props(message))
    got_routed.set()


sink.on_message_received = on_sink_message
sink.connect()
out("SINK CONNECTED")

client = IoTHubModuleClient.create_from_connection_string(
    os.environ["IOTHUB_MODULE_CONNECTION_STRING"], server_verification_cert=ca
)
client.connect()
out("CONNECTED")
twin = client.get_twin()
out("TWIN", json.dumps(twin, sort_keys=True))
client.patch_twin_reported_properties({"module": "filter"})
out("PATCHED")

got_input, got_method, got_desired = threading.Event(), threading.Event(), threading.Event()


def on_message(message):
    out("INPUT", message.input_name, message.data.decode("utf-8"), props(message))
    forwarded = Message("filtered " + message.data.decode("utf-8"))
    forwarded.custom_properties["stage"] = "filtered"
    client.send_message_to_output(forwarded, "out1")
    out("FORWARDED")
    got_input.set()


def on_method(request):
    out("METHOD", request.name, json.dumps(request.payload, sort_keys=True))
    client.send_method_response(
        MethodResponse.create_from_method_request(request, 200, {"module": "filter"})
    )
    got_method.set()


def on_desired(patch):
    out("DESIRED", json.dumps(patch, sort_keys=True))
    got_desired.set()


client.on_message_received = on_message
client.on_method_request_received = on_method
client.on_twin_desired_properties_patch_received = on_desired
out("READY")
ok = all(e.wait(30) for e in (got_input, got_method, got_desired, got_routed))
client.shutdown()
sink.shutdown()
out("DONE" if ok else "TIMEOUT")
sys.exit(0 if ok else 1)
