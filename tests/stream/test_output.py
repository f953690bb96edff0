"""The output thread (stream/output.py): the mask policy, and a mask that cannot be drawn never costs a decision."""

from __future__ import annotations

import numpy as np

from inspector.config import load_dataclass
from inspector.protocol.messages import Result
from inspector.stream.config import DaemonConfig
from inspector.stream.frames import Frame
from inspector.stream.output import Outgoing, Output
from inspector.stream.product import Product
from inspector.stream.prometheus import Metrics

from .fakes import FakeBackend, FakeCalibration


class Sent:
    """Stands in for the PUB socket: what would have been sent."""

    def __init__(self) -> None:
        self.messages: list[tuple[object, bytes | None]] = []

    def send(self, msg, mask_png=None) -> bool:
        self.messages.append((msg, mask_png))
        return True


def _output(publish: str) -> tuple[Output, Sent]:
    cfg = load_dataclass(DaemonConfig, {"product": "cable", "masks": {"publish": publish}}, "test")
    sent = Sent()
    return Output(cfg, sent, None, Metrics(0), lambda seq, fps: None), sent


def _fail(roi) -> Outgoing:
    p = Product("cable", FakeBackend(), FakeCalibration(), "sha", roi, (48, 64))
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    frame = Frame(3, 1e9, 0.0, np.zeros((48, 64, 3), np.uint8))
    return Outgoing(Result("t1", "cable", 3, None, 1e9, "FAIL", 0.9, 3.6, 0.25), frame, mask, p)


def test_the_mask_goes_with_a_fail_per_policy():
    out, sent = _output("fail")
    out._deliver(_fail(None))
    msg, png = sent.messages[0]
    assert png is not None and msg.mask.width == 64 and msg.mask.height == 48 and out.counts["FAIL"] == 1
    out, sent = _output("never")
    out._deliver(_fail(None))
    assert sent.messages[0][1] is None and sent.messages[0][0].mask is None


def test_a_mask_that_cannot_be_drawn_is_left_out_and_the_decision_published():
    out, sent = _output("always")
    out._deliver(_fail((0, 0, 0, 0)))  # an empty ROI: OpenCV cannot resize the mask into it
    assert len(sent.messages) == 1 and out.results == 1
    msg, png = sent.messages[0]
    assert msg.decision == "FAIL" and png is None and msg.mask is None and msg.latency_ms >= 0
