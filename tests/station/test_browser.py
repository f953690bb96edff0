"""The station in a real browser (headless Chromium + Selenium) against a real daemon running the real tiny model
and its calibration on a synthetic stream: the live image changes, counters rise, a FAIL appears in the gallery,
a token-less write is refused, and a review click is stored and used by `calibrate --reviewed`."""

from __future__ import annotations

import shutil
import stat

import cv2
import numpy as np
import pytest

from inspector.data.dataset import fingerprint, load_dataset, read_image
from inspector.reviews import ReviewStore
from tests.stream.harness import Line, config

from .support import TOKEN, chromium_driver, quit_driver, station_on, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def product(trained, tmp_path_factory):
    from tests.product_support import calibrated_home

    return calibrated_home(trained, tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def frames_dir(trained, tmp_path_factory):
    """The synthetic product's test images (good and defective) and a noise frame nothing can pass."""
    d = tmp_path_factory.mktemp("stream")
    for i, s in enumerate(load_dataset(trained["data"]).test):
        shutil.copy(s.path, d / f"{i:02d}_{s.defect_type}.png")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(d / "99_noise.png"), noise)
    return d


@pytest.fixture(scope="module")
def line_and_station(product, frames_dir, tmp_path_factory):
    from tests.product_support import TorchLoader

    home, _record = product
    tmp = tmp_path_factory.mktemp("line")
    cfg = config(tmp, {"kind": "memory", "width": 64, "height": 64, "uri": str(frames_dir), "rate_fps": 8.0},
                 home=str(home), pipeline={"drop_policy": "drop_oldest"}, preview={"rate_fps": 5.0})
    with Line(cfg, loader=TorchLoader(home), subscribe=True) as line, station_on(line, home) as st:
        line.go()
        yield line, st


@pytest.fixture(scope="module")
def page(line_and_station):
    _line, st = line_and_station
    driver = chromium_driver()
    try:
        driver.get(st.url)
        yield driver
    finally:
        quit_driver(driver)


def _text(driver, css: str) -> str:
    return driver.find_element("css selector", css).text


def _count(driver, k: str) -> int:
    t = _text(driver, f'section.line[data-line="t1"] [data-k="{k}"]')
    return int(t) if t.isdigit() else -1


def test_the_live_image_changes_and_the_counters_rise(page):
    img = wait_for(lambda: page.find_elements("css selector", 'section.line[data-line="t1"] canvas.live[data-seq]'),
                   what="a live picture")[0]
    first_seq, first_png = img.get_attribute("data-seq"), img.screenshot_as_png
    wait_for(lambda: img.get_attribute("data-seq") != first_seq, what="a new live picture")
    # The pixels on screen changed, not just an attribute: the stream alternates good and defective parts.
    wait_for(lambda: img.screenshot_as_png != first_png, what="the live picture's pixels to change")
    before = _count(page, "pass") + _count(page, "fail")
    wait_for(lambda: _count(page, "pass") + _count(page, "fail") >= before + 10, what="the counters to rise")
    assert _text(page, 'section.line[data-line="t1"] .pill.state') == "RUNNING"
    assert "calibration cable-" in _text(page, 'section.line[data-line="t1"] .meta')
    frr = _text(page, 'section.line[data-line="t1"] [data-k="frr"]')
    interval = _text(page, 'section.line[data-line="t1"] [data-k="frrci"]')
    assert frr.endswith("%") and "95 %" in interval and "–" in interval  # the calibration's promise, its interval


def test_a_fail_appears_in_the_gallery_with_its_picture(page):
    card = wait_for(lambda: page.find_elements("css selector", '.card[data-decision="FAIL"][data-reviewable="true"]'),
                    what="a FAIL in the gallery")[0]
    assert card.find_element("css selector", ".d").text == "FAIL"
    assert float(card.find_element("css selector", ".s").text.rstrip("×")) >= 1.0
    thumb = card.find_element("css selector", "img.thumb")
    wait_for(lambda: page.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumb),
             what="the reject's picture to load")


def test_a_token_less_write_is_refused(page, line_and_station, product):
    from selenium.webdriver.common.action_chains import ActionChains

    home, _ = product
    before = len(ReviewStore(home, "cable").all())
    rid = int(wait_for(lambda: page.find_elements("css selector", ".card[data-reviewable='true']"))[0]
              .get_attribute("data-rid"))
    status = page.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/api/rejects/{rid}/review', {{method: 'POST', body: JSON.stringify({{verdict: 'false_reject'}})}})"
        ".then(r => done(r.status));")
    assert status == 401
    status = page.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/lines/t1/pause', {method: 'POST', headers: {Authorization: 'Bearer not-the-token-at-all'}})"
        ".then(r => done(r.status));")
    assert status == 403
    # Clicking a review without signing in asks for the token and stores nothing.
    ActionChains(page).move_to_element(page.find_element("css selector", ".gallery-wrap")).perform()
    card = page.find_element("css selector", f".card[data-rid='{rid}']")
    card.find_element("css selector", "button[data-verdict='false_reject']").click()
    wait_for(lambda: page.find_element("id", "token-dialog").is_displayed(), what="the sign-in dialog")
    page.find_element("id", "token-cancel").click()
    assert "sign in" in card.find_element("css selector", ".review-state").text
    assert len(ReviewStore(home, "cable").all()) == before
    assert TOKEN not in page.page_source


def test_a_review_click_is_stored_and_calibrate_reviewed_uses_it(page, product):
    from selenium.webdriver.common.action_chains import ActionChains

    from inspector.bundle import model_path
    from inspector.calibrate.run import Policy, calibrate
    from tests.calibration_support import TorchFrames

    home, record = product
    gallery = page.find_element("css selector", 'section.line[data-line="t1"] .gallery-wrap')
    ActionChains(page).move_to_element(gallery).perform()  # the gallery holds still under the operator's mouse
    card = wait_for(lambda: [c for c in page.find_elements("css selector", ".card[data-reviewable='true']")
                             if "reviewed" not in c.get_attribute("class")], what="an unreviewed reject")[0]
    frame_id = int(card.find_element("css selector", ".when").text.rsplit(" ", 1)[1])
    card.find_element("css selector", ".note").send_keys("glare, the part is fine")
    card.find_element("css selector", "button[data-verdict='false_reject']").click()
    page.find_element("id", "token-input").send_keys(TOKEN)
    page.find_element("id", "token-ok").click()  # signs in, then the review goes out
    wait_for(lambda: "saved" in card.find_element("css selector", ".review-state").text, what="the review to save")
    assert _text(page, "#who") == "operator: ann"

    reviews = ReviewStore(home, "cable").latest()
    r = next(x for x in reviews if x.frame_id == frame_id)
    assert (r.verdict, r.who, r.note, r.decision, r.line) == ("false_reject", "ann", "glare, the part is fine",
                                                              "FAIL", "t1")
    assert stat.S_IMODE(r.frame.stat().st_mode) == 0o600 and stat.S_IMODE(r.frame.parent.stat().st_mode) == 0o700
    frame = read_image(r.frame)
    assert frame.shape == (64, 64, 3) and r.normalized_score >= 1.0

    run = calibrate("cable", home, policy=Policy(target_frr=0.02), backend=TorchFrames(model_path(home, "cable")),
                    write_report=False, reviewed=True, data=product[0].parent / "extra" / "cable")
    rec = run.record
    assert rec.data["reviewed"]["false_rejects"] == sum(x.verdict == "false_reject" for x in reviews) >= 1
    assert rec.n_good == record.n_good + rec.data["reviewed"]["false_rejects"]
    used = {i["sha256"]: i["label"] for i in rec.data["images"]}
    assert used[fingerprint(r.frame)] == 0  # the reviewed false reject is a good calibration image now
    # It failed at the old threshold (the largest good score, k = n): the new one lies above it.
    assert rec.image_threshold > record.image_threshold
