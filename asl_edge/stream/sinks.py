"""Where events go: JSON lines (stdout or a file) and MQTT.

A sink that cannot deliver says so at once (one line per outage, and when it recovers), keeps
what it could not deliver in a bounded buffer and retries; what is still undelivered when it
closes, or overflows the buffer, is lost — said, and counted in :meth:`report` (``lost``), which
``asl-edge stream`` puts in its summary and its exit code. A sink never stops detection.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Deque, Dict, Optional
from urllib.parse import urlsplit

from .engine import StreamError

BUFFER = 10000     # items a failing sink keeps for its retry


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class JsonLinesSink:
    """One JSON object per line, each written whole (a line cut by a full disk is completed on
    the retry); ``path`` None writes to stdout. The file is appended to; its folder is made. A
    path that cannot be opened at all is a :class:`StreamError` here, before any event."""

    def __init__(self, path: Optional[str] = None, report: Callable[[str], None] = _stderr):
        self.target = path or "stdout"
        self.report = report
        self.backlog: Deque[bytes] = collections.deque()
        self.delivered = self.lost = 0
        self.failing = False
        self._written = 0                      # bytes of the backlog's first line already written
        if path is None:
            self.fd = sys.stdout.fileno()
            return
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            raise StreamError(f"cannot write events to {path}: {err.strerror or err}") from err

    def send(self, item: Dict) -> None:
        """Write ``item`` (and what earlier failures kept); on failure keep it for the next call."""
        if len(self.backlog) >= BUFFER:
            self.backlog.popleft()
            self._written = 0
            self.lost += 1
            if self.lost == 1 or self.lost % 1000 == 0:
                self.report(f"warning: {self.target}: {self.lost} events lost so far (more than {BUFFER} waiting)")
        self.backlog.append((json.dumps(item) + "\n").encode())
        self._drain()

    def _drain(self) -> None:
        try:
            while self.backlog:
                line = self.backlog[0]
                self._written += os.write(self.fd, line[self._written:])
                if self._written == len(line):
                    self.backlog.popleft()
                    self._written = 0
                    self.delivered += 1
        except OSError as err:
            if not self.failing:
                self.report(f"warning: cannot write events to {self.target}: {err.strerror or err}; keeping up to "
                            f"{BUFFER} and retrying")
            self.failing = True
            return
        if self.failing:
            self.report(f"{self.target}: writing events again")
        self.failing = False

    def close(self) -> None:
        """Write what is kept, once more; what still cannot be written is lost (said)."""
        self._drain()
        if self.backlog:
            self.lost += len(self.backlog)
            self.report(f"error: {len(self.backlog)} events could not be written to {self.target} and are lost")
            self.backlog.clear()
        if self.target != "stdout":
            os.close(self.fd)

    def summary(self) -> Dict:
        """``{"sink", "delivered", "lost"}``."""
        return {"sink": self.target, "delivered": self.delivered, "lost": self.lost}


def parse_mqtt_url(url: str):
    """``(host, port, topic)`` of ``mqtt://host[:port]/topic``; StreamError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname or not parts.path.strip("/"):
        raise StreamError(f"--mqtt {url}: expected mqtt://host[:port]/topic")
    try:
        port = parts.port or 1883
    except ValueError:
        raise StreamError(f"--mqtt {url}: the port is not a number") from None
    return parts.hostname, port, parts.path.strip("/")


def frigate_payload(message: Dict, before: Optional[Dict]) -> Dict:
    """An event message in the shape Frigate publishes on its events topic: ``{"type", "before",
    "after"}``, each side the event as it stood (``id``, ``stream``, ``box`` when set, ``label``, ``label_id``,
    ``start``, ``end``, ``score``, ``top_score``, ``final``, ``decided_at``, ``latency_s``);
    ``before`` is the event as last published (for ``new``, the event itself, as Frigate does)."""
    after = {key: message[key] for key in ("id", "stream", "box", "label", "label_id", "start", "end", "score",
                                           "decided_at", "latency_s") if key in message}
    after["top_score"] = max(message["score"], before["top_score"] if before else 0.0)
    after["final"] = message["type"] == "end"
    return {"type": message["type"], "before": before or after, "after": after}


class MqttSink:
    """Publishes to ``mqtt://host[:port]/topic`` with QoS 1: each event message to ``topic`` in
    Frigate's shape (:func:`frigate_payload`), each status item to ``topic/status`` as it is.
    paho-mqtt connects in the background, reconnects by itself and holds up to ``BUFFER``
    messages while the broker is away; a message counts as delivered when the broker
    acknowledges it. A broker that cannot be reached, or goes away, is said at once;
    :meth:`close` waits (bounded) for the acknowledgements of what is queued."""

    def __init__(self, url: str, report: Callable[[str], None] = _stderr):
        try:
            import paho.mqtt.client as mqtt
        except ImportError as err:
            raise StreamError(f"--mqtt needs paho-mqtt: pip install 'asl-edge[stream]' ({err})") from err
        self.host, self.port, self.topic = parse_mqtt_url(url)
        self.target = f"mqtt://{self.host}:{self.port}/{self.topic}"
        self.report = report
        self.delivered = self.lost = 0
        self._lock = threading.Lock()
        self._pending: set = set()               # mids published, not acknowledged yet
        self._acked_early: set = set()           # acknowledged before publish() returned their mid
        self.connected = False
        self._outage_said = False
        self._closing = False
        self._events: Dict = {}                  # (stream, id) -> the event as last published
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.max_queued_messages_set(BUFFER)
        self.client.reconnect_delay_set(min_delay=1, max_delay=16)
        self.client.on_connect = self._connected
        self.client.on_connect_fail = self._connect_failed
        self.client.on_disconnect = self._disconnected
        self.client.on_publish = self._published
        self.client.connect_async(self.host, self.port)
        self.client.loop_start()

    def _connected(self, client, userdata, flags, reason, properties=None):
        if reason.is_failure:
            self._outage(f"the broker refused the connection ({reason})")
            return
        self.connected = True
        if self._outage_said:
            self.report(f"MQTT: connected to {self.target} again; queued events are being sent")
        self._outage_said = False

    def _connect_failed(self, client, userdata):
        self._outage("cannot connect")

    def _disconnected(self, client, userdata, flags, reason, properties=None):
        self.connected = False
        if not self._closing:
            self._outage(f"connection lost ({reason})")

    def _outage(self, what: str) -> None:
        if not self._outage_said:
            self.report(f"warning: MQTT {self.target}: {what}; retrying, keeping up to {BUFFER} events")
        self._outage_said = True

    def _published(self, client, userdata, mid, reason=None, properties=None):
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
                self.delivered += 1
            else:
                self._acked_early.add(mid)

    def send(self, item: Dict) -> None:
        from paho.mqtt.client import MQTT_ERR_QUEUE_SIZE

        if "status" in item:
            topic, payload = f"{self.topic}/status", item
        else:
            key = (item["stream"], item["id"])
            topic, payload = self.topic, frigate_payload(item, self._events.pop(key, None))
            if item["type"] not in ("end", "cancel"):
                self._events[key] = payload["after"]
        info = self.client.publish(topic, json.dumps(payload), qos=1)
        with self._lock:
            if info.rc == MQTT_ERR_QUEUE_SIZE:
                self.lost += 1
                if self.lost == 1 or self.lost % 1000 == 0:
                    self.report(f"warning: MQTT {self.target}: {self.lost} events lost so far (more than {BUFFER} "
                                "waiting for the broker)")
            elif info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
                self.delivered += 1
            else:
                self._pending.add(info.mid)

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait up to ``timeout_s`` for the broker to acknowledge every queued event, then
        disconnect; what is not acknowledged by then is counted as lost (said)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    break
            time.sleep(0.05)
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()
        with self._lock:
            if self._pending:
                self.lost += len(self._pending)
                self.report(f"error: {len(self._pending)} events were not acknowledged by {self.target} within "
                            f"{timeout_s:g} s and may be lost")
                self._pending.clear()

    def summary(self) -> Dict:
        """``{"sink", "delivered", "lost"}``."""
        return {"sink": self.target, "delivered": self.delivered, "lost": self.lost}


def check_writable(path: str, what: str) -> None:
    """StreamError now if ``path`` (a file the run replaces at its end) could not be written then:
    its folder is made; the file itself is not touched."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StreamError(f"cannot write {what} to {path}: {err.strerror or err}") from err
    if target.is_dir():
        raise StreamError(f"cannot write {what} to {path}: it is a folder")
    if not os.access(target.parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise StreamError(f"cannot write {what} to {path}: permission denied")
