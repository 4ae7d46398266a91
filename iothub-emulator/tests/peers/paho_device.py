"""A device written with paho-mqtt alone, as in the product documentation:
it computes its own SAS token, connects over TLS (trusting the emulator's
CA), subscribes to cloud-to-device messages, sends telemetry with
properties and prints the first C2D message it receives.

Environment: IOTHUB_HOST (hub host name), IOTHUB_PORT (MQTT/TLS port),
IOTHUB_CA (CA PEM path), IOTHUB_DEVICE_ID, IOTHUB_DEVICE_KEY (base64).
"""
import base64
import hashlib
import hmac
import os
import ssl
import sys
import threading
import time
import urllib.parse

from paho.mqtt import client as mqtt

host = os.environ["IOTHUB_HOST"]
port = int(os.environ["IOTHUB_PORT"])
device_id = os.environ["IOTHUB_DEVICE_ID"]
key = os.environ["IOTHUB_DEVICE_KEY"]


def generate_sas_token(uri, key, expiry=3600):
    ttl = int(time.time()) + expiry
    encoded_uri = urllib.parse.quote(uri, safe="")
    to_sign = (encoded_uri + "\n" + str(ttl)).encode("utf-8")
    signature = base64.b64encode(
        hmac.new(base64.b64decode(key), to_sign, hashlib.sha256).digest()
    )
    return "SharedAccessSignature sr={}&sig={}&se={}".format(
        encoded_uri, urllib.parse.quote(signature, safe=""), ttl
    )


done = threading.Event()
c2d_topic = "devices/{}/messages/devicebound/#".format(device_id)


def on_connect(client, userdata, flags, rc):
    print("CONNACK", rc, flush=True)
    if rc != 0:
        done.set()
        return
    client.subscribe(c2d_topic, qos=1)


def on_subscribe(client, userdata, mid, granted_qos):
    print("SUBACK", list(granted_qos), flush=True)
    topic = "devices/{}/messages/events/{}".format(
        device_id, "source=paho&%24.ct=application%2Fjson&%24.ce=utf-8"
    )
    client.publish(topic, '{"temperature": 21.5}', qos=1)


def on_publish(client, userdata, mid):
    print("PUBACK", mid, flush=True)


def on_message(client, userdata, msg):
    print("C2D", msg.topic, msg.payload.decode("utf-8"), "qos", msg.qos, flush=True)
    done.set()


client = mqtt.Client(client_id=device_id, protocol=mqtt.MQTTv311, clean_session=True)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_publish = on_publish
client.on_message = on_message
client.username_pw_set(
    username="{}/{}/?api-version=2021-04-12".format(host, device_id),
    password=generate_sas_token("{}/devices/{}".format(host, device_id), key),
)
client.tls_set(
    ca_certs=os.environ["IOTHUB_CA"],
    certfile=None,
    keyfile=None,
    cert_reqs=ssl.CERT_REQUIRED,
    tls_version=ssl.PROTOCOL_TLS_CLIENT,
    ciphers=None,
)
client.connect("localhost", port=port, keepalive=60)
client.loop_start()
ok = done.wait(30)
client.disconnect()
client.loop_stop()
print("DONE" if ok else "TIMEOUT", flush=True)
sys.exit(0 if ok else 1)
