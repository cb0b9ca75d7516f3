"""Where events go: JSON lines (stdout or a file) and MQTT. A sink that fails is reported and
retried with what it could not deliver kept in a bounded buffer; it never stops detection."""

from __future__ import annotations

import collections
import json
import sys
from typing import Deque, Dict, Optional, TextIO
from urllib.parse import urlsplit

from .engine import StreamError

BUFFER = 10000     # items a failing sink keeps for its retry


class JsonLinesSink:
    """One JSON object per line, flushed per line; ``path`` None writes to stdout."""

    def __init__(self, path: Optional[str] = None, report=None):
        self.path = path
        self.report = report or (lambda message: print(message, file=sys.stderr))
        self.backlog: Deque[str] = collections.deque(maxlen=BUFFER)
        self.failing = False
        self.file: Optional[TextIO] = None if path is None else self._open()

    def _open(self) -> Optional[TextIO]:
        try:
            return open(self.path, "a", encoding="utf-8")
        except OSError as err:
            self._fail(err)
            return None

    def _fail(self, err: Exception) -> None:
        if not self.failing:
            self.report(f"warning: cannot write events to {self.path or 'stdout'}: {err}; keeping up to {BUFFER} "
                        "and retrying")
        self.failing = True

    def send(self, item: Dict) -> None:
        self.backlog.append(json.dumps(item))
        if self.path is not None and self.file is None:
            self.file = self._open()                      # after a failure: try the file again
        target = sys.stdout if self.path is None else self.file
        if target is None:
            return
        try:
            while self.backlog:
                target.write(self.backlog[0] + "\n")
                self.backlog.popleft()
            target.flush()
            if self.failing:
                self.report(f"{self.path or 'stdout'}: writing again")
            self.failing = False
        except OSError as err:
            self._fail(err)
            self.file = None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class MqttSink:
    """Publishes each item as JSON to ``mqtt://host[:port]/topic`` with QoS 1. paho-mqtt reconnects
    by itself and holds up to ``BUFFER`` messages while the broker is away."""

    def __init__(self, url: str, report=None):
        try:
            import paho.mqtt.client as mqtt
        except ImportError as err:
            raise StreamError(f"--mqtt needs paho-mqtt: pip install 'asl-edge[stream]' ({err})") from err
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname or not parts.path.strip("/"):
            raise StreamError(f"--mqtt {url}: expected mqtt://host[:port]/topic")
        self.topic = parts.path.strip("/")
        self.report = report or (lambda message: print(message, file=sys.stderr))
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.max_queued_messages_set(BUFFER)
        self.client.reconnect_delay_set(min_delay=1, max_delay=16)
        self.client.on_disconnect = self._disconnected
        self.client.on_connect = self._connected
        self.connected_once = False
        self.client.connect_async(parts.hostname, parts.port or 1883)
        self.client.loop_start()

    def _connected(self, client, userdata, flags, reason, properties=None):
        if self.connected_once:
            self.report(f"MQTT: connected again to publish on {self.topic!r}")
        self.connected_once = True

    def _disconnected(self, client, userdata, flags, reason, properties=None):
        self.report(f"warning: MQTT broker connection lost ({reason}); reconnecting, events are kept")

    def send(self, item: Dict) -> None:
        self.client.publish(self.topic, json.dumps(item), qos=1)

    def close(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for queued messages to be delivered, then disconnect."""
        import time

        deadline = time.monotonic() + timeout_s
        while self.client.want_write() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.client.loop_stop()
        self.client.disconnect()
