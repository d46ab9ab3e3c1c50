"""The history pages an engine serves (``runtime/_history_pages.py``): every event once, in
order, within the byte budget; bad requests are named."""

from __future__ import annotations

import pytest

from aion.model import Event, Payload, SignalReceived, WorkflowStarted
from aion.runtime._history_pages import MAX_PAGE_BYTES, history_page, page_request, read_page

P = Payload("application/json", b'"x"')


def history(n: int) -> list[Event]:
    evs = [Event("wf", 1, "r", 1, WorkflowStarted("T", [P]), "c0")]
    evs += [Event("wf", i, "r", i, SignalReceived("s", [Payload("application/json", b'"' + b"y" * 300 + b'"')]), f"c{i}")
            for i in range(2, n + 1)]
    return evs


@pytest.mark.parametrize("budget", [1, 700, 5_000, 10**9])
def test_pages_cover_the_history_once_in_order(budget: int) -> None:
    h = history(40)
    got: list[Event] = []
    next_seq: int | None = 1
    pages = 0
    while next_seq is not None:
        page, next_seq = read_page(history_page(h, page_request(next_seq, budget)))
        assert page, "a page holds at least one event"
        got += page
        pages += 1
    assert got == h
    expected = {1: (40, 40), 700: (14, 40), 5_000: (3, 39), 10**9: (1, 1)}[budget]
    assert expected[0] <= pages <= expected[1]


def test_a_page_is_capped_whatever_is_asked() -> None:
    h = history(4_000)
    payload = history_page(h, page_request(1, 10**9))
    assert len(payload.data) <= MAX_PAGE_BYTES + 1_000  # the cap, plus the envelope
    page, next_seq = read_page(payload)
    assert 0 < len(page) < 4_000 and next_seq == page[-1].seq + 1


def test_from_past_the_end_is_an_empty_last_page() -> None:
    page, next_seq = read_page(history_page(history(3), page_request(9)))
    assert page == [] and next_seq is None


def test_a_bad_request_says_what_is_expected() -> None:
    with pytest.raises(ValueError, match="from_seq"):
        history_page(history(2), [Payload("application/json", b"not json")])
