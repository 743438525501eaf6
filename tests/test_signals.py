from nextmm.inference.signals import SignalSpan, find_signal_spans, next_signal_token

SIGNALS = {"image": [10, 11, 12], "audio": [20, 21]}


def test_complete_runs_are_found_in_order():
    spans = find_signal_spans([1, 10, 11, 12, 2, 20, 21, 3], SIGNALS)
    assert spans == [SignalSpan("image", 1, 3, 3), SignalSpan("audio", 5, 2, 2)]
    assert all(s.complete for s in spans)


def test_partial_run_is_reported_not_raised():
    spans = find_signal_spans([1, 10, 11, 5, 10], SIGNALS)
    assert [(s.start, s.length, s.complete) for s in spans] == [(1, 2, False), (4, 1, False)]


def test_out_of_order_tokens_without_a_first_token_are_ignored():
    assert find_signal_spans([11, 12, 21, 4], SIGNALS) == []
    # [IMG0] [IMG2]: the run stops at the first token out of order
    assert find_signal_spans([10, 12], SIGNALS)[0].length == 1


def test_next_signal_token_completes_only_an_open_run():
    assert next_signal_token([5, 10], SIGNALS) == 11
    assert next_signal_token([5, 10, 11], SIGNALS) == 12
    assert next_signal_token([5, 10, 11, 12], SIGNALS) is None
    assert next_signal_token([10, 11, 7], SIGNALS) is None
    assert next_signal_token([], SIGNALS) is None
