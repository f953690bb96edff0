"""The MQTT bridge against real daemons and a real Mosquitto broker on loopback."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from inspector.bridge.config import BridgeFile
from inspector.bridge.run import BridgeThread
from inspector.config import load_dataclass
from tests.stream.harness import Line, config

from .mosquitto import Mosquitto, require_mosquitto
from .support import frame_folder, memory_source, until

pytest.importorskip("paho.mqtt")


class Inbox:
    """A paho subscriber with a persistent session: every message as (topic, payload bytes), in arrival order."""

    def __init__(self, port: int, topics: list[str], client_id: str = "test-mes") -> None:
        import paho.mqtt.client as mqtt

        self.got: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.on_connect = lambda cl, *_a: cl.subscribe([(t, 1) for t in topics])
        c.on_subscribe = lambda *_a: self.subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(0.1, 0.5)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        if not self.subscribed.wait(10):
            raise TimeoutError("test subscriber did not subscribe")

    def _on_message(self, _c, _u, m) -> None:
        with self.lock:
            self.got.append((m.topic, bytes(m.payload)))

    def json(self, suffix: str) -> list[dict]:
        with self.lock:
            return [json.loads(p) for t, p in self.got if t.endswith(suffix)]

    def wait(self, pred, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if pred(self):
                return
            time.sleep(0.02)
        raise TimeoutError(f"waited {timeout_s} s for {what}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def unique(messages: list[dict]) -> list[dict]:
    """Drop QoS 1 repeats (same bridge_run and bridge_seq), keeping the first arrival."""
    seen, out = set(), []
    for m in messages:
        key = (m["bridge_run"], m["bridge_seq"])
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def mqtt_file(port: int, lines: list[Line], **mqtt) -> BridgeFile:
    entries = [{"line": x.cfg.line, "publish": x.pub, "control": x.ctl_endpoint, "heartbeat_ms": 100} for x in lines]
    settings = {"port": port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **mqtt}
    return load_dataclass(BridgeFile, {"bridges": [{"name": "mes", "kind": "mqtt", "lines": entries,
                                                    "mqtt": settings}]}, "test")


def _wait_links_up(bridges: BridgeThread) -> None:
    until(lambda: all(link.liveness.up for link in bridges.get("mes").links), 10, "the bridge to see the daemons")


def _line(tmp: Path, name: str, frames: int, rate: float, **sections) -> Line:
    src = {**memory_source(frame_folder(tmp / "frames"), rate), "frames": frames}
    return Line(config(tmp / name, src, line=name, **sections))


def test_results_events_masks_and_link_state(tmp_path):
    require_mosquitto()
    with Mosquitto(tmp_path / "broker") as broker, _line(tmp_path, "t1", 12, 100, masks={"publish": "fail"}) as line:
        inbox = Inbox(broker.port, ["inspector/#"])
        try:
            with BridgeThread(mqtt_file(broker.port, [line], masks=True)) as bridges:
                _wait_links_up(bridges)
                # Heartbeats are forwarded only while the broker is reachable: wait for one before the frames.
                inbox.wait(lambda b: b.json("/t1/heartbeat"), 10, "a forwarded heartbeat")
                got = line.go()
                line.collect(got, 20)  # to end of stream: the daemon stops by itself after 12 frames
                inbox.wait(lambda b: len(b.json("/t1/result")) >= 12 and
                           any(m["state"] == "fault" for m in b.json("/t1/bridge")), 10, "12 results and a fault")
                results = unique(inbox.json("/t1/result"))
                assert [r["frame_id"] for r in results] == [r.frame_id for r in got.results]
                assert [r["decision"] for r in results] == [r.decision for r in got.results]
                assert all(r["schema"] == 1 and r["line"] == "t1" and r["product"] == "cable" for r in results)
                with inbox.lock:
                    masks = {t.rsplit("/", 1)[1]: p for t, p in inbox.got if "/t1/mask/" in t}
                fails = [r.frame_id for r in got.results if r.decision == "FAIL"]
                assert sorted(int(k) for k in masks) == fails and all(p[:4] == b"\x89PNG" for p in masks.values())
                assert inbox.json("/t1/status")
                states = [m["state"] for m in inbox.json("/t1/bridge")]
                assert states[0] == "up" and states[-1] == "fault"  # the daemon ended: the bridge says so
                assert "ended its stream (source_ended)" in inbox.json("/t1/bridge")[-1]["reason"]
                inbox.wait(lambda b: b.json("/bridge/mes/status"), 10, "the bridge's status")
                assert inbox.json("/bridge/mes/status")[-1]["online"] is True
        finally:
            inbox.close()


def test_disk_buffer_survives_a_bridge_restart_and_overflow_is_alarmed(tmp_path):
    require_mosquitto()
    broker = Mosquitto(tmp_path / "broker")  # not started: the broker is down
    buffer = {"path": str(tmp_path / "buffer.sqlite"), "max_messages": 20, "max_inflight": 5}
    with _line(tmp_path, "t1", 30, 200) as line:
        with BridgeThread(mqtt_file(broker.port, [line], buffer=buffer)) as bridges:
            _wait_links_up(bridges)
            got = line.go()
            line.collect(got, 20)
            bridge = bridges.get("mes")
            until(lambda: bridge.buffer.dropped >= 12, 10, "drops")
        assert (tmp_path / "buffer.sqlite").stat().st_mode & 0o777 == 0o600
    # 30 results + the link's up and fault + status messages went into 20 places: the oldest were dropped.
    dropped = bridge.buffer.dropped
    assert dropped >= 12
    with broker:
        inbox = Inbox(broker.port, ["inspector/#"])
        try:
            with BridgeThread(mqtt_file(broker.port, [line], buffer=buffer)):
                inbox.wait(lambda b: any(r["frame_id"] == 29 for r in b.json("/t1/result")), 10, "the last result")
                inbox.wait(lambda b: b.json("/bridge/mes/status"), 10, "status")
        finally:
            inbox.close()
    results = unique(inbox.json("/t1/result"))
    ids = [r["frame_id"] for r in results]
    assert ids == sorted(ids) and ids[-1] == 29 and len(ids) < 30  # in order, the newest kept
    assert len(inbox.json("/bridge/mes/alarm")) == 0  # the restarted bridge dropped nothing itself
    # The first bridge's drops were logged; the second one restored what was on disk, nothing more.
    assert all(r["bridge_seq"] >= dropped for r in results)


def test_overflow_alarm_reaches_the_broker(tmp_path):
    require_mosquitto()
    broker = Mosquitto(tmp_path / "broker")
    with _line(tmp_path, "t1", 40, 200) as line, \
            BridgeThread(mqtt_file(broker.port, [line], buffer={"max_messages": 10, "max_inflight": 2})) as bridges:
        _wait_links_up(bridges)
        got = line.go()
        line.collect(got, 20)
        broker.start()
        try:
            inbox = Inbox(broker.port, ["inspector/#"])
            # Retained: a consumer that connects after the bridge delivered its backlog still learns of the gap.
            inbox.wait(lambda b: b.json("/bridge/mes/alarm"), 10, "the alarm")
            alarm = inbox.json("/bridge/mes/alarm")[0]
            assert alarm["kind"] == "buffer_overflow" and alarm["dropped_total"] == bridges.get("mes").buffer.dropped
            assert alarm["dropped"] >= 30 and alarm["capacity"] == 10
            inbox.close()
        finally:
            broker.stop()


@pytest.mark.slow
def test_500_results_survive_a_10_s_broker_outage_in_order(tmp_path):
    require_mosquitto()
    per_line = 250
    with Mosquitto(tmp_path / "broker") as broker, _line(tmp_path, "t1", per_line, 25) as l1, \
            _line(tmp_path, "t2", per_line, 25) as l2:
        inbox = Inbox(broker.port, ["inspector/+/result"])
        try:
            with BridgeThread(mqtt_file(broker.port, [l1, l2], heartbeats=False)) as bridges:
                _wait_links_up(bridges)
                time.sleep(1.5)  # the broker's autosave (1 s) has the subscriber's session
                g1, g2 = l1.go(), l2.go()
                inbox.wait(lambda b: len(b.got) >= 100, 30, "100 results")
                broker.kill()
                t_kill = time.monotonic()
                while time.monotonic() - t_kill < 10:  # the daemons keep inspecting; the bridge buffers
                    l1.pump(g1, 20)
                    l2.pump(g2, 20)
                waiting = len(bridges.get("mes").buffer)
                broker.start()
                l1.collect(g1, 30)
                l2.collect(g2, 30)
                inbox.wait(lambda b: len(unique(b.json("/result"))) >= 2 * per_line, 60, "all 500 results")
                assert bridges.get("mes").buffer.dropped == 0
                assert waiting >= 200, f"only {waiting} results waited out the outage"
        finally:
            inbox.close()
    results = unique(inbox.json("/result"))
    assert len(results) == 2 * per_line
    for line, got in (("t1", g1), ("t2", g2)):
        ids = [r["frame_id"] for r in results if r["line"] == line]
        assert ids == [r.frame_id for r in got.results] == list(range(per_line)), f"line {line}: lost or reordered"


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a broker certificate for 127.0.0.1 signed by it (PEM), with cryptography."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key, issuer: str, issuer_key, ca: bool, san=None):
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("test-ca", ca_key, "test-ca", ca_key, True)
    srv = cert("broker", srv_key, "test-ca", ca_key, False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ca.pem", folder / "broker.pem", folder / "broker.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(srv_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def test_tls_and_password(tmp_path):
    import subprocess

    require_mosquitto()
    ca, cert, key = _tls_files(tmp_path / "tls")
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "mes", "s3cret"], check=True, capture_output=True)
    (tmp_path / "good").write_text("s3cret\n")
    (tmp_path / "bad").write_text("wrong\n")
    for f in ("good", "bad"):
        (tmp_path / f).chmod(0o600)
    extra = f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\nallow_anonymous false\npassword_file {passwd}\n"
    with Mosquitto(tmp_path / "broker", extra=extra) as broker, _line(tmp_path, "t1", 5, 100) as line:
        tls = {"enabled": True, "ca_certs": str(ca)}
        with BridgeThread(mqtt_file(broker.port, [line], username="mes", password_file=str(tmp_path / "good"),
                                    tls=tls)) as good, \
                BridgeThread(mqtt_file(broker.port, [line], username="mes", password_file=str(tmp_path / "bad"),
                                       tls=tls, client_id="intruder")) as bad:
            _wait_links_up(good)
            got = line.go()
            line.collect(got, 20)
            bridge, intruder = good.get("mes"), bad.get("mes")
            until(lambda: bridge.buffer.delivered >= 5, 10, "5 results delivered over TLS")
            until(lambda: intruder.broker.startswith("refused"), 10, "the wrong password refused")
            assert bridge.broker == "connected" and intruder.buffer.delivered == 0
            assert "Not authorized" in intruder.broker
    (tmp_path / "good").chmod(0o644)
    with pytest.raises(Exception, match="readable by others"):
        BridgeThread(mqtt_file(1, [line], username="mes", password_file=str(tmp_path / "good")))
