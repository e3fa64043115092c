"""Stop strings over streamed pieces: never shown, even when split across tokens."""

from engine.runtime.stops import StopMatcher


def feed_all(stops, pieces):
    matcher, shown = StopMatcher(stops), []
    for piece in pieces:
        text, hit = matcher.feed(piece)
        shown.append(text)
        if hit:
            return "".join(shown), True
    return "".join(shown) + matcher.flush(), False


def test_no_stops_passes_everything_through():
    assert feed_all([], ["a", "b"]) == ("ab", False)


def test_stop_split_across_pieces_is_not_shown():
    assert feed_all(["###"], ["Hello #", "#", "# rest"]) == ("Hello ", True)


def test_partial_match_that_does_not_complete_is_released():
    assert feed_all(["STOP"], ["ST", "OP"[:1], "ay here"]) == ("STOay here", False)


def test_earliest_of_several_stops_wins():
    assert feed_all(["END", "\n\n"], ["one\n\ntwo END"]) == ("one", True)


def test_held_text_is_flushed_at_the_end():
    matcher = StopMatcher(["<end>"])
    assert matcher.feed("done <en") == ("done ", False)
    assert matcher.flush() == "<en"
