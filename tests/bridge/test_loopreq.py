"""Lazy Pirate requests on an asyncio loop (bridge/loopreq.py) against a real ZeroMQ ROUTER."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import zmq

from inspector.bridge.loopreq import LoopRequests
from inspector.errors import ProtocolError


class Router:
    """A ROUTER on a thread: answers ``{"id", "ok", "result": cmd}``, stays silent for cmd 'mute', and answers
    garbage for cmd 'garbage'. ``seen`` lists the commands in arrival order."""

    def __init__(self) -> None:
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.seen: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(20):
                continue
            ident, empty, raw = self.sock.recv_multipart()
            req = json.loads(raw)
            self.seen.append(req["cmd"])
            if req["cmd"] == "mute":
                continue
            body = b"not json" if req["cmd"] == "garbage" else json.dumps(
                {"id": req["id"], "ok": True, "result": req["cmd"]}).encode()
            self.sock.send_multipart([ident, empty, body])

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close(0)


@pytest.fixture
def router():
    r = Router()
    yield r
    r.close()


def test_requests_go_one_at_a_time_in_order_and_each_gets_its_reply(router):
    async def run() -> tuple[list, list]:
        lr = LoopRequests(asyncio.get_running_loop(), f"tcp://127.0.0.1:{router.port}", 2000, 0)
        sent: list[str] = []
        futs = [lr.request("trigger", part_id=f"P{i}", on_send=lambda i=i: sent.append(f"P{i}")) for i in range(20)]
        replies = await asyncio.wait_for(asyncio.gather(*futs), 10)
        lr.close()
        return replies, sent

    replies, sent = asyncio.run(run())
    assert [r["result"] for r in replies] == ["trigger"] * 20 and all(r["ok"] for r in replies)
    assert sent == [f"P{i}" for i in range(20)]  # on_send once each, in order, as each left
    assert router.seen == ["trigger"] * 20


def _first_fails_the_next_answers(port: int, first: str, timeout_ms: int, retries: int
                                  ) -> tuple[BaseException | None, dict]:
    """Send ``first`` then a trigger; (the first's error, the trigger's reply)."""
    async def run() -> tuple[BaseException | None, dict]:
        lr = LoopRequests(asyncio.get_running_loop(), f"tcp://127.0.0.1:{port}", timeout_ms, retries)
        failing, after = lr.request(first), lr.request("trigger", part_id="X")
        err = None
        try:
            await asyncio.wait_for(failing, 5)
        except ProtocolError as e:
            err = e
        reply = await asyncio.wait_for(after, 5)
        lr.close()
        return err, reply

    return asyncio.run(run())


def test_no_reply_is_retried_on_a_fresh_socket_then_fails_and_the_next_request_still_goes(router):
    err, reply = _first_fails_the_next_answers(router.port, "mute", 100, 2)
    assert err is not None and "after 3 attempts of 100 ms" in str(err)
    assert router.seen[:3] == ["mute"] * 3  # Lazy Pirate: sent again each time
    assert reply["ok"] and reply["result"] == "trigger"


def test_a_reply_that_is_not_json_fails_that_request_only(router):
    err, reply = _first_fails_the_next_answers(router.port, "garbage", 2000, 0)
    assert err is not None and "is not JSON" in str(err)
    assert reply["ok"] and reply["result"] == "trigger"


def test_close_fails_what_is_pending_with_a_clear_error():
    async def run() -> list[BaseException | None]:
        lr = LoopRequests(asyncio.get_running_loop(), "tcp://127.0.0.1:1", 5000, 0)  # nobody there
        futs = [lr.request("trigger", part_id="A"), lr.request("pause")]
        await asyncio.sleep(0.05)
        lr.close()
        return [f.exception() for f in futs]

    errs = asyncio.run(run())
    assert all(isinstance(e, ProtocolError) and "stopped before" in str(e) for e in errs)
