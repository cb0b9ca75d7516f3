"""Fault-injection soak of ``asl-edge stream``: many RTSP streams for hours while their servers,
links, MQTT broker and events disk fail again and again; does anything get lost or leak?

    python benchmarks/soak.py [--minutes 120] [--streams 16] [--servers 4] [--fault-every 60] [--out DIR]

The runtime under test is the real command, ``asl-edge stream``, in its own process: the bundled
demo model with ``motion`` features on ``--streams`` RTSP streams of demo scenes (one scene per
stream, 160x120 at 15 fps, H.264), served by ``--servers`` GstRtspServer processes on loopback,
each stream through its own TCP proxy; events go to a JSON-lines file on a small tmpfs and to a
mosquitto broker on loopback, to which this script subscribes. Every ``--fault-every`` seconds
(jittered) one fault, in turn:

* ``server-kill``: a server process is killed and started again 2-8 s later (its streams reconnect);
* ``server-stop``: a server process is frozen (SIGSTOP) for 2-8 s;
* ``link-stall``: a stream's proxy holds its bytes for 2-6 s (what packet loss does to TCP);
* ``link-drop``: a stream's proxy cuts its connections (a network drop);
* ``broker-restart``: mosquitto is killed and started again 2-10 s later;
* ``disk-full``: the events file's tmpfs is filled for 5-20 s (skipped, and said, where a tmpfs
  cannot be mounted: it needs root).

Reported (JSON and Markdown in ``--out``): faults injected and recovered per kind (a stream
fault is recovered when each of its streams reads frames at half its rate or more again, over
10 s; a broker fault when the subscriber receives events again; a disk fault when the file grows
again; the recovery time runs from the end of the fault), the time from each
recovery to the affected stream's next event reaching the subscriber, events lost (the runtime's own count per sink,
and events in the file against those the subscriber received), the runtime's RSS every 10 min
and its growth per hour after the first 10 min, p99 decision latency per 10 min, and the
runtime's summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

SCENE = "test://demo?seed={seed}&seconds={seconds}&fps=15&width=160&height=120"
KINDS = ("server-kill", "server-stop", "link-stall", "link-drop", "broker-restart", "disk-full")
BUCKET_S = 600          # RSS and latency are reported per 10 minutes
RECOVERY_WAIT_S = 120   # a fault not recovered from within this is counted as not recovered
RATE_SPAN_S = 10.0      # a stream is live again when it reads at half its rate over this span
SAVE_EVERY_S = 60       # the report so far is rewritten this often (a killed run keeps its results)
SERVER_START_S = 120.0  # how long a (re)started RTSP server may take to listen, per attempt
SERVER_ATTEMPTS = 3
FPS = 15.0              # the scenes' (and the demo model's) frame rate


# ----------------------------------------------------------------------------------- server mode
def serve(port: int, seeds: List[int], seconds: float) -> None:
    """An RTSP server on loopback with one mount per seed, ``/scene<seed>``: the demo scene, H.264."""
    import gi

    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, GstRtspServer

    from asl_edge.video import gst, parse_uri
    from asl_edge.video.scene import animate, scene_description

    gst()
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    for seed in seeds:
        spec = parse_uri(SCENE.format(seed=seed, seconds=seconds))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f"( {scene_description(spec)} ! videoconvert ! x264enc speed-preset=ultrafast "
                           "tune=zerolatency key-int-max=15 ! rtph264pay name=pay0 pt=96 )")
        factory.set_shared(True)
        factory.connect("media-configure", lambda f, media, spec=spec: animate(media.get_element(), spec))
        server.get_mount_points().add_factory(f"/scene{seed}", factory)
    server.attach(None)
    GLib.MainLoop().run()


# ------------------------------------------------------------------------------------ the harness
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


class Proxy:
    """A TCP proxy from ``port`` to ``target``; ``stall(seconds)`` holds every byte for that long,
    ``drop()`` cuts the open connections."""

    def __init__(self, target: int):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stalled_until = 0.0
        self.pairs: List = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                self.pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError
                    while time.monotonic() < self.stalled_until:
                        time.sleep(0.05)
                    peers[sock].sendall(data)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                sock.close()
            with self.lock:
                self.pairs = [p for p in self.pairs if p != (a, b)]

    def stall(self, seconds: float) -> None:
        self.stalled_until = time.monotonic() + seconds

    def drop(self) -> None:
        with self.lock:
            pairs = list(self.pairs)
        for client, server in pairs:
            for sock in (client, server):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Soak:
    def __init__(self, args, out: Path):
        self.args, self.out, self.work = args, out, out / "work"
        self.rng = random.Random(args.seed)
        self.started = time.monotonic()
        self.seeds = list(range(args.streams))
        self.server_ports = [free_port() for _ in range(args.servers)]
        self.servers: List[Optional[subprocess.Popen]] = [None] * args.servers
        self.stream_server = [i % args.servers for i in self.seeds]
        self.proxies = [Proxy(self.server_ports[self.stream_server[i]]) for i in self.seeds]
        self.uris = [f"rtsp://127.0.0.1:{p.port}/scene{seed}" for p, seed in zip(self.proxies, self.seeds)]
        self.broker_port = free_port()
        self.broker: Optional[subprocess.Popen] = None
        self.disk = self.work / "disk"
        self.events_path = self.disk / "events.jsonl"
        self.tmpfs = False
        self.faults: List[Dict] = []
        self.received: List[Dict] = []          # (wall, event) from the subscriber
        self.seen_lines = 0
        self.file_events: List[Dict] = []       # events read back from the file, with the wall time seen
        self.stats: List[Dict] = []             # the runtime's stats lines
        self.offset = float("inf")              # our clock minus the runtime's (its stats' wall_s)
        self.rss: List[Dict] = []
        self.process: Optional[subprocess.Popen] = None
        self._file_offset = 0

    def now(self) -> float:
        return time.monotonic() - self.started

    # --- the pieces -----------------------------------------------------------------------------
    def start_server(self, k: int) -> None:
        seeds = [s for s in self.seeds if self.stream_server[s] == k]
        self.servers[k] = subprocess.Popen(
            [sys.executable, __file__, "serve", "--port", str(self.server_ports[k]), "--seeds",
             ",".join(map(str, seeds)), "--seconds", str(int(self.args.minutes * 60 + 600))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # a loaded machine can take a while to start Python and GStreamer: wait, then try again
        for attempt in range(SERVER_ATTEMPTS):
            if wait_for_port(self.server_ports[k], SERVER_START_S):
                return
            print(f"[{self.now():6.0f} s] RTSP server {k} not listening after {SERVER_START_S:g} s "
                  f"(attempt {attempt + 1} of {SERVER_ATTEMPTS})", flush=True)
            if self.servers[k].poll() is not None:
                self.servers[k] = subprocess.Popen(self.servers[k].args, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
        raise RuntimeError(f"RTSP server {k} did not start")

    def start_broker(self) -> None:
        conf = self.work / "mosquitto.conf"
        conf.write_text(f"listener {self.broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.broker = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        if not wait_for_port(self.broker_port):
            raise RuntimeError("mosquitto did not start")

    def mount_disk(self) -> None:
        self.disk.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(self.disk)],
                                capture_output=True, text=True)
        self.tmpfs = result.returncode == 0
        if not self.tmpfs:
            print(f"soak: no tmpfs for the events file ({result.stderr.strip()}): disk-full faults are skipped",
                  file=sys.stderr)

    def subscribe(self) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="asl-soak", clean_session=False)
        client.on_message = lambda c, u, m: self._on_message(m)
        client.on_connect = lambda c, u, f, r, p=None: c.subscribe("asl/soak", qos=1)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.connect_async("127.0.0.1", self.broker_port)
        client.loop_start()
        self.subscriber = client

    def _on_message(self, message) -> None:
        """An event message (Frigate's shape); final ones are counted."""
        payload = json.loads(message.payload)
        event = payload["after"]
        if payload["type"] == "end":
            self.received.append({"wall": self.now(), "stream": event["stream"], "end": event["end"],
                                  "label": event["label"]})

    def start_runtime(self) -> None:
        command = [sys.executable, "-m", "asl_edge", "stream", "--model", self.args.model,
                   "--out", str(self.events_path), "--mqtt", f"mqtt://127.0.0.1:{self.broker_port}/asl/soak",
                   "--stats-interval", "2", "--summary", str(self.work / "summary.json"),
                   "--reconnect-attempts", "100000", "--reconnect-interval", "1", "--frame-timeout", "5",
                   "--min-score", "0.2"]
        for uri in self.uris:
            command += ["--source", uri]
        self.log = open(self.work / "stream.log", "w")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log)

    # --- observation ----------------------------------------------------------------------------
    def read_file(self) -> None:
        """New lines of the events file: events and stats, with the wall time they were seen."""
        try:
            with open(self.events_path, "rb") as fd:
                fd.seek(self._file_offset)
                data = fd.read()
        except OSError:
            return
        lines = data.split(b"\n")
        self._file_offset += len(data) - len(lines[-1])
        for line in lines[:-1]:
            item = json.loads(line)
            if item.get("status") == "stats":
                # the runtime's own clock, placed on ours by the earliest sighting (the file is read
                # every 0.5 s, and not at all while a fault is being injected)
                self.offset = min(self.offset, self.now() - item["wall_s"])
                self.stats.append(item)
            elif item.get("type") == "end":
                self.file_events.append({"wall": self.now(), "stream": item["stream"], "end": item["end"],
                                         "latency_s": item["latency_s"], "score": item["score"]})

    def sample_rss(self) -> None:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return
        kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
        self.rss.append({"wall": self.now(), "rss_mb": kb / 1024})

    def resumed_at(self, stream: int, after: float) -> Optional[float]:
        """The wall time, after ``after``, from which ``stream`` read frames at half its rate or
        more for ``RATE_SPAN_S`` (None: not yet)."""
        items = [(s["wall_s"] + self.offset, s["streams"][stream]["frames"]) for s in self.stats
                 if s["wall_s"] + self.offset >= after]
        j = 0
        for wall, frames in items:
            while j < len(items) and items[j][0] < wall + RATE_SPAN_S:
                j += 1
            if j == len(items):
                return None
            if items[j][1] - frames >= 0.5 * FPS * (items[j][0] - wall):
                return wall
        return None

    # --- faults ---------------------------------------------------------------------------------
    def inject(self, kind: str) -> Dict:
        rng = self.rng
        fault = {"kind": kind, "at": self.now()}
        if kind in ("server-kill", "server-stop"):
            k = rng.randrange(self.args.servers)
            fault["streams"] = [s for s in self.seeds if self.stream_server[s] == k]
            length = rng.uniform(2, 8)
            if kind == "server-kill":
                self.servers[k].kill()
                self.servers[k].wait()
                time.sleep(length)
                self.start_server(k)
            else:
                self.servers[k].send_signal(signal.SIGSTOP)
                time.sleep(length)
                self.servers[k].send_signal(signal.SIGCONT)
        elif kind in ("link-stall", "link-drop"):
            s = rng.randrange(self.args.streams)
            fault["streams"] = [s]
            length = rng.uniform(2, 6) if kind == "link-stall" else 0.0
            if kind == "link-stall":
                self.proxies[s].stall(length)
                time.sleep(length)
            else:
                self.proxies[s].drop()
        elif kind == "broker-restart":
            length = rng.uniform(2, 10)
            self.broker.kill()
            self.broker.wait()
            time.sleep(length)
            self.start_broker()
        else:
            length = rng.uniform(5, 20)
            filler = self.disk / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=128"], capture_output=True)
            time.sleep(length)
            filler.unlink(missing_ok=True)
        fault.update({"seconds": round(length, 2), "ended": self.now()})
        fault["received_at_end"] = len(self.received)
        fault["file_at_end"] = self._file_size()
        return fault

    def _file_size(self) -> int:
        try:
            return self.events_path.stat().st_size
        except OSError:
            return 0

    def check_recoveries(self) -> None:
        """Mark the faults whose effect is over: streams reading frames again, events reaching the
        subscriber again, the file growing again."""
        for fault in self.faults:
            if "recovered_after_s" in fault or self.now() - fault["ended"] > RECOVERY_WAIT_S:
                continue
            if "streams" in fault:
                resumed = [self.resumed_at(s, fault["ended"]) for s in fault["streams"]]
                at = None if None in resumed else max(resumed)
            elif fault["kind"] == "broker-restart":
                at = self.now() if len(self.received) > fault["received_at_end"] else None
            else:
                at = self.now() if self._file_size() > fault["file_at_end"] else None
            if at is not None:
                fault["recovered_after_s"] = round(max(0.0, at - fault["ended"]), 2)
                fault["recovered_at"] = at

    # --- the run --------------------------------------------------------------------------------
    def run(self) -> Dict:
        self.mount_disk()
        self.start_broker()
        for k in range(self.args.servers):
            self.start_server(k)
        self.subscribe()
        self.start_runtime()
        end = self.started + self.args.minutes * 60
        last_fault = end - min(RECOVERY_WAIT_S, 0.2 * self.args.minutes * 60)     # room to recover from it
        next_fault = time.monotonic() + self.args.warmup
        kinds = [k for k in KINDS if k != "disk-full" or self.tmpfs]
        turn = 0
        next_rss = next_save = time.monotonic()
        while time.monotonic() < end and self.process.poll() is None:
            self.read_file()
            self.check_recoveries()
            if time.monotonic() >= next_rss:
                self.sample_rss()
                next_rss += 60
            if time.monotonic() >= next_save:
                self.save(self.report(crashed=False, partial=True))
                next_save += SAVE_EVERY_S
            if next_fault <= time.monotonic() < last_fault:
                fault = self.inject(kinds[turn % len(kinds)])
                turn += 1
                self.faults.append(fault)
                print(f"[{self.now():6.0f} s] {fault['kind']} ({fault['seconds']} s) -> "
                      f"{len(self.faults)} faults, {len(self.file_events)} events in the file, "
                      f"{len(self.received)} received", flush=True)
                next_fault = time.monotonic() + self.args.fault_every * self.rng.uniform(0.5, 1.5)
            time.sleep(0.5)
        crashed = self.process.poll() is not None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
        time.sleep(3)                            # the last acknowledgements reach the subscriber
        self.read_file()
        self.check_recoveries()
        return self.report(crashed)

    def save(self, report: Dict) -> None:
        """Write the report (JSON and Markdown) beside the work folder, replacing the last one."""
        for name, text in (("soak.json", json.dumps(report, indent=1) + "\n"), ("soak.md", markdown(report))):
            partial = self.out / (name + ".part")
            partial.write_text(text)
            partial.replace(self.out / name)

    def stop(self) -> None:
        for server in self.servers:
            if server is not None:
                server.kill()
        if self.broker is not None:
            self.broker.kill()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.disk)], capture_output=True)

    # --- the report -----------------------------------------------------------------------------
    def report(self, crashed: bool, partial: bool = False) -> Dict:
        """The results so far; ``partial`` while the run goes on (no runtime summary yet)."""
        from asl_edge.bench.measure import machine

        try:
            summary = json.loads((self.work / "summary.json").read_text())
        except (OSError, ValueError):
            summary = None
        by_kind = {}
        for kind in KINDS:
            faults = [f for f in self.faults if f["kind"] == kind]
            recovered = [f["recovered_after_s"] for f in faults if "recovered_after_s" in f]
            by_kind[kind] = {"injected": len(faults), "recovered": len(recovered),
                             "recovery_s_p50": statistics.median(recovered) if recovered else None,
                             "recovery_s_max": max(recovered) if recovered else None}
        to_event = []
        for fault in self.faults:
            if "streams" in fault and "recovered_at" in fault:
                names = {self.uris[s] for s in fault["streams"]}
                later = [e["wall"] for e in self.received if e["stream"] in names and e["wall"] > fault["recovered_at"]]
                if later:
                    to_event.append(min(later) - fault["recovered_at"])
        buckets = []
        for start in range(0, int(self.args.minutes * 60), BUCKET_S):
            inside = [e["latency_s"] for e in self.file_events if start <= e["wall"] < start + BUCKET_S
                      and e["score"] >= 0.3]
            rss = [r["rss_mb"] for r in self.rss if start <= r["wall"] < start + BUCKET_S]
            buckets.append({"minute": start // 60, "rss_mb": round(rss[-1], 1) if rss else None,
                            "events": len(inside),
                            "latency_p99_s": round(sorted(inside)[int(0.99 * (len(inside) - 1))], 2) if inside else None})
        after_warmup = [r for r in self.rss if r["wall"] >= BUCKET_S]
        growth = None
        if len(after_warmup) >= 2:
            hours = (after_warmup[-1]["wall"] - after_warmup[0]["wall"]) / 3600
            growth = (after_warmup[-1]["rss_mb"] - after_warmup[0]["rss_mb"]) / hours if hours > 0 else None
        sinks = summary["sinks"] if summary else []
        return {"benchmark": "soak", "partial_after_s": round(self.now()) if partial else None,
                "machine": {"cpu": machine()["cpu"], "cpus": os.cpu_count(), "load_1min_at_save": os.getloadavg()[0]}, "minutes": self.args.minutes, "streams": self.args.streams,
                "servers": self.args.servers, "fault_every_s": self.args.fault_every, "tmpfs": self.tmpfs,
                "runtime_crashed": crashed, "exit_code": None if partial else self.process.returncode,
                "faults": {"injected": len(self.faults),
                           "recovered": sum("recovered_after_s" in f for f in self.faults), "by_kind": by_kind},
                "recovery_to_first_event_s": {"count": len(to_event),
                                              "p50": statistics.median(to_event) if to_event else None,
                                              "max": max(to_event) if to_event else None},
                "events": {"in_file": len(self.file_events), "received_by_subscriber": len(self.received),
                           "lost_by_sink": {s["sink"]: s["lost"] for s in sinks},
                           "delivered_by_sink": {s["sink"]: s["delivered"] for s in sinks}},
                "rss_growth_mb_per_h_after_10_min": growth, "per_10_min": buckets,
                "fault_log": self.faults, "summary": summary}


def markdown(report: Dict) -> str:
    state = (f"still running after {report['partial_after_s']} s" if report["partial_after_s"] is not None
             else f"runtime exit code {report['exit_code']}")
    if report.get("aborted"):
        state = f"aborted after {report['partial_after_s']} s ({report['aborted']})"
    lines = [f"Soak: {report['streams']} RTSP streams, {report['minutes']:g} min, a fault every "
             f"~{report['fault_every_s']:g} s; {state}; {report['machine']['cpu']}, {report['machine']['cpus']} CPUs",
             "", "| fault | injected | recovered | recovery p50 / max (s) |", "|---|---|---|---|"]
    for kind, row in report["faults"]["by_kind"].items():
        timing = f"{row['recovery_s_p50']:.1f} / {row['recovery_s_max']:.1f}" if row["recovered"] else "-"
        lines.append(f"| {kind} | {row['injected']} | {row['recovered']} | {timing} |")
    e = report["events"]
    lines += ["", f"events: {e['in_file']} in the file, {e['received_by_subscriber']} received over MQTT; "
              f"lost per sink: {e['lost_by_sink']}",
              f"recovery to the stream's next event: p50 {report['recovery_to_first_event_s']['p50']}, max "
              f"{report['recovery_to_first_event_s']['max']} s over {report['recovery_to_first_event_s']['count']}",
              f"RSS growth after the first 10 min: {report['rss_growth_mb_per_h_after_10_min']} MB/h"]
    summary = report["summary"]
    if summary:
        lines.append(f"the runtime's own count: {summary['dropped_frames']} frames dropped, {summary['gaps']} gaps "
                     f"({summary['gap_s']:.1f} s of stream time), {summary['behind_warnings']} falling-behind warnings")
    lines += ["",
              "| minute | RSS (MB) | events | p99 decision latency (s) |", "|---|---|---|---|"]
    lines += [f"| {b['minute']} | {b['rss_mb']} | {b['events']} | {b['latency_p99_s']} |" for b in report["per_10_min"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    serve_parser = sub.add_parser("serve", help="(internal) one RTSP server of demo scenes")
    serve_parser.add_argument("--port", type=int, required=True)
    serve_parser.add_argument("--seeds", required=True)
    serve_parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--fault-every", type=float, default=50.0, help="mean seconds between faults")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the first fault")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="default: the bundled demo model")
    parser.add_argument("--out", default="out/soak")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.port, [int(s) for s in args.seeds.split(",")], args.seconds)
        return
    from asl_edge.demo import BUNDLED_MODEL

    args.model = args.model or str(BUNDLED_MODEL)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "work").mkdir(exist_ok=True)
    soak = Soak(args, out)
    try:
        report = soak.run()
    except BaseException as err:                 # the results so far are kept, with the reason
        report = soak.report(crashed=False, partial=True)
        report["aborted"] = f"{type(err).__name__}: {err}"
        soak.save(report)
        raise
    finally:
        soak.stop()
    soak.save(report)
    print(markdown(report))


if __name__ == "__main__":
    main()
