"""User search filters -> the engine-neutral `IndexFilter`.

Pure: the caller passes `now`, so tests and replays are deterministic. The tenant and ACL
clauses are not built here; the index adapters add them from the `AccessScope` on every read,
so nothing a user sends can widen what they may see.
"""

from __future__ import annotations

from datetime import UTC, datetime

from core.models import EFFECTIVE_ALWAYS, EFFECTIVE_FIELD, AnyOf, Condition, IndexFilter, MatchAny, Range, SearchFilters

# SearchFilters field -> payload field it narrows (values must match any of the given ones).
_MATCH_FIELDS: tuple[tuple[str, str], ...] = (
    ("tags", "tags"),
    ("source", "source"),
    ("language", "language"),
    ("doc_ids", "doc_id"),
    ("team_id", "team_id"),
    ("policy_tags", "policy_tags"),
)
EFFECTIVE_FROM_FIELD = "effective_from_ts"
EFFECTIVE_TO_FIELD = "effective_to_ts"


def _timestamp(moment: datetime) -> float:
    """Naive datetimes are read as UTC, the zone every stored effective date is in."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _values(raw: list[str] | None) -> tuple[str, ...]:
    """Distinct non-empty values, in order. An empty list means "not filtering on this", the
    same as leaving it out, rather than "match nothing"."""
    if not raw:
        return ()
    return tuple(dict.fromkeys(v for v in raw if v))


def effective_window(as_of: datetime) -> AnyOf:
    """Documents in force at `as_of`: those without dates, or effective_from <= as_of <
    effective_to. Undated documents also carry EFFECTIVE_MIN_TS / EFFECTIVE_MAX_TS, so the range
    alone would be right for them too; the keyword option is the cheap way through (see
    `core.models.EFFECTIVE_FIELD`)."""
    ts = _timestamp(as_of)
    return AnyOf(
        (
            (MatchAny(EFFECTIVE_FIELD, (EFFECTIVE_ALWAYS,)),),
            (Range(EFFECTIVE_FROM_FIELD, lte=ts), Range(EFFECTIVE_TO_FIELD, gt=ts)),
        )
    )


def build_index_filter(filters: SearchFilters | None, now: datetime) -> IndexFilter:
    """Every search sees only documents in force at `filters.as_of` (default `now`), further
    narrowed by whichever user filters are set."""
    f = filters or SearchFilters()
    must: list[Condition] = [effective_window(f.as_of or now)]
    for attr, field in _MATCH_FIELDS:
        values = _values(getattr(f, attr))
        if values:
            must.append(MatchAny(field, values))
    excluded = _values(f.exclude_policy_tags)
    must_not: tuple[Condition, ...] = (MatchAny("policy_tags", excluded),) if excluded else ()
    return IndexFilter(must=tuple(must), must_not=must_not)


def narrow(base: IndexFilter, extra: SearchFilters | None) -> IndexFilter:
    """`base` AND the match clauses of `extra` (a gatherer's own filter). Both sets of clauses
    must hold, so a gatherer filter and a request filter on the same field intersect: neither
    can widen the other, and the effective-date window of `base` stays the only one."""
    if extra is None:
        return base
    must: list[Condition] = list(base.must)
    for attr, field in _MATCH_FIELDS:
        values = _values(getattr(extra, attr))
        if values:
            must.append(MatchAny(field, values))
    excluded = _values(extra.exclude_policy_tags)
    must_not = base.must_not + ((MatchAny("policy_tags", excluded),) if excluded else ())
    return IndexFilter(must=tuple(must), must_not=must_not)
