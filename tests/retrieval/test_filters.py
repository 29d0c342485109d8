from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.models import AnyOf, IndexFilter, MatchAny, Range, SearchFilters
from retrieval.filters import build_index_filter

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TS = NOW.timestamp()


def window(ts: float) -> tuple[AnyOf]:
    """Undated documents pass on one keyword; dated ones must be in force at `ts`."""
    ranges = (Range("effective_from_ts", lte=ts), Range("effective_to_ts", gt=ts))
    return (AnyOf(((MatchAny("effective", ("always",)),), ranges)),)


WINDOW = window(TS)


def test_no_filters_still_restricts_to_documents_in_force_now() -> None:
    assert build_index_filter(None, NOW) == IndexFilter(must=WINDOW)
    assert build_index_filter(SearchFilters(), NOW) == IndexFilter(must=WINDOW)


def test_each_user_filter_narrows_its_payload_field() -> None:
    f = SearchFilters(
        tags=["hr", "hr", "policy"],
        source=["upload"],
        language=["en"],
        doc_ids=["d1", "d2"],
        team_id=["t9"],
        policy_tags=["internal"],
        exclude_policy_tags=["confidential", "regulatory"],
    )
    assert build_index_filter(f, NOW) == IndexFilter(
        must=(
            *WINDOW,
            MatchAny("tags", ("hr", "policy")),
            MatchAny("source", ("upload",)),
            MatchAny("language", ("en",)),
            MatchAny("doc_id", ("d1", "d2")),
            MatchAny("team_id", ("t9",)),
            MatchAny("policy_tags", ("internal",)),
        ),
        must_not=(MatchAny("policy_tags", ("confidential", "regulatory")),),
    )


def test_empty_lists_mean_no_filter_rather_than_no_results() -> None:
    f = SearchFilters(tags=[], doc_ids=[""], exclude_policy_tags=[])
    assert build_index_filter(f, NOW) == IndexFilter(must=WINDOW)


def test_as_of_replaces_now_in_the_effective_window() -> None:
    as_of = datetime(2020, 1, 1, tzinfo=UTC)
    built = build_index_filter(SearchFilters(as_of=as_of), NOW)
    assert built.must == window(as_of.timestamp())


def test_time_zones_are_honoured_and_naive_times_are_utc() -> None:
    plus2 = NOW.astimezone(timezone(timedelta(hours=2)))
    assert build_index_filter(None, plus2) == build_index_filter(None, NOW)
    naive = NOW.replace(tzinfo=None)
    assert build_index_filter(None, naive) == build_index_filter(None, NOW)


def test_window_includes_its_start_and_excludes_its_end() -> None:
    (window,) = build_index_filter(None, NOW).must
    assert isinstance(window, AnyOf)
    start, end = window.options[1]
    assert isinstance(start, Range) and start.lte == TS and start.lt is None
    assert isinstance(end, Range) and end.gt == TS and end.gte is None
