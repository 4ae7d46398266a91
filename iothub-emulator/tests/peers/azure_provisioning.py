"""Microsoft's azure-iot-device SDK provisions a device against the
emulator's DPS endpoint (ProvisioningDeviceClient, symmetric key), then
connects to the emulator's hub with the result (IoTHubDeviceClient) and
sends one telemetry message.

The SDK's ports are fixed (8883 for MQTT, 443 for WebSocket) and DPS and
the hub both use them: paho's Client.connect is wrapped to use the DPS
ports while provisioning and the hub ports afterwards.

Environment: DPS_ID_SCOPE, DPS_REGISTRATION_ID, DPS_KEY (the device's key:
the individual key or the derived group key), IOTHUB_CA (CA PEM path),
DPS_PORT, DPS_WS_PORT, IOTHUB_PORT, IOTHUB_WS_PORT, IOTHUB_WEBSOCKETS=1 to
use MQTT over WebSocket for both.
"""
import os
import sys

import paho.mqtt.client as mqtt

DPS_PORTS = {8883: int(os.environ["DPS_PORT"]), 443: int(os.environ["DPS_WS_PORT"])}
HUB_PORTS = {8883: int(os.environ["IOTHUB_PORT"]), 443: int(os.environ["IOTHUB_WS_PORT"])}
ports = DPS_PORTS
_connect = mqtt.Client.connect


def _redirected_connect(self, host, port=1883, *args, **kwargs):
    return _connect(self, host, ports.get(port, port), *args, **kwargs)


mqtt.Client.connect = _redirected_connect

from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient  # noqa: E402


def out(*words):
    print(*words, flush=True)


websockets = os.environ.get("IOTHUB_WEBSOCKETS") == "1"
with open(os.environ["IOTHUB_CA"]) as f:
    ca = f.read()
registration_id = os.environ["DPS_REGISTRATION_ID"]
key = os.environ["DPS_KEY"]

provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
    provisioning_host="localhost",
    registration_id=registration_id,
    id_scope=os.environ["DPS_ID_SCOPE"],
    symmetric_key=key,
    server_verification_cert=ca,
    websockets=websockets,
)
provisioning.provisioning_payload = {"source": "azure-iot-device"}
result = provisioning.register()
state = result.registration_state
out("STATUS", result.status)
if result.status != "assigned":
    sys.exit(1)
out("ASSIGNED", state.assigned_hub, state.device_id, state.sub_status)

ports = HUB_PORTS
client = IoTHubDeviceClient.create_from_symmetric_key(
    symmetric_key=key,
    hostname=state.assigned_hub,
    device_id=state.device_id,
    server_verification_cert=ca,
    websockets=websockets,
)
client.connect()
out("CONNECTED", "websockets" if websockets else "tcp")
msg = Message('{"provisioned": true}')
msg.custom_properties["source"] = "azure-sdk-dps"
client.send_message(msg)
out("SENT")
client.shutdown()
out("DONE")
