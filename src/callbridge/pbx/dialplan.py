"""What decides where a call goes, as one immutable snapshot: the external
lines, the routing rules and the normalization rules, read from the store
together and swapped whole (calls in progress keep the one they began with)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..logs import log_event
from ..media.policy import ip_of
from ..store.models import DEFAULT_REGION
from .normalize import NormalizationError, NormalizationRule, Normalizer
from .routing import Action, MaskError, RewriteError, Router, RoutingRule, parse_mask, parse_rewrite
from .trunks import IPNetwork, Trunk

logger = logging.getLogger("callbridge.pbx")


@dataclass(frozen=True, slots=True)
class Dialplan:
    trunks: Mapping[int, Trunk] = field(default_factory=dict)
    router: Router = field(default_factory=lambda: Router(()))
    normalizer: Normalizer = field(default_factory=lambda: Normalizer((), {}, DEFAULT_REGION))
    # Worked out once, not on every INVITE: where active lines send from,
    # and the lines' own numbers (what a provider's INVITE is addressed to).
    sources: tuple[tuple[IPNetwork, Trunk], ...] = field(init=False)
    own_numbers: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        active = [trunk for trunk in self.trunks.values() if trunk.active]
        sources = tuple((network, trunk) for trunk in active for network in trunk.networks())
        numbers = {n for trunk in self.trunks.values() for n in (trunk.username, trunk.login)}
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "own_numbers", frozenset(numbers - {""}))

    def trunk_for_source(self, host: str, transport: str) -> Trunk | None:
        """The active external line a request from `host` over `transport`
        belongs to: its provider sends from there over the line's transport."""
        return next((t for t in self._trunks_at(host) if t.transport == transport), None)

    def is_provider_address(self, host: str) -> bool:
        """Whether an active external line's provider sends from `host`."""
        return next(self._trunks_at(host), None) is not None

    def _trunks_at(self, host: str) -> Iterator[Trunk]:
        source = ip_of(host)
        if source is None:
            return
        for network, trunk in self.sources:
            if source in network:
                yield trunk

    @classmethod
    def of(
        cls,
        trunks: Iterable[Trunk],
        routing: Iterable[RoutingRule],
        normalization: Iterable[NormalizationRule],
    ) -> Dialplan:
        by_id = {trunk.id: trunk for trunk in trunks}
        regions = {trunk.id: trunk.default_region for trunk in by_id.values()}
        return cls(
            MappingProxyType(by_id),
            Router(routing),
            Normalizer(normalization, regions, DEFAULT_REGION),
        )


class RuleError(ValueError):
    """A stored routing rule whose mask or rewrite does not compile."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def routing_rule_of(row: Mapping[str, Any]) -> RoutingRule:
    """A routing rule from its stored row; `RuleError` names a field that
    does not compile."""
    compiled: dict[str, Any] = {}
    for name, parse in (
        ("source_mask", parse_mask),
        ("destination_mask", parse_mask),
        ("destination_rewrite", parse_rewrite),
    ):
        try:
            compiled[name] = parse(row[name])
        except (MaskError, RewriteError) as error:
            raise RuleError(name, error.problem) from None
    return RoutingRule(
        id=row["id"],
        name=row["name"],
        direction=row["direction"],
        external_line_id=row["external_line_id"],
        priority=row["priority"],
        action=Action(row["action_type"], row["action_target"]),
        is_default=row["is_default"],
        **compiled,
    )


def normalization_rule_of(row: Mapping[str, Any]) -> NormalizationRule:
    return NormalizationRule(
        id=row["id"],
        name=row["name"],
        priority=row["priority"],
        direction=row["direction"],
        external_line_id=row["external_line_id"],
        fields=frozenset(row["fields"] or ()),
        method=row["method"],
        match=row["match"],
        replacement=row["replacement"],
    )


def dialplan_of(
    trunks: Iterable[Trunk],
    routing_rows: Iterable[Mapping[str, Any]],
    normalization_rows: Iterable[Mapping[str, Any]],
) -> Dialplan:
    """The dialplan of `trunks` and the rules the stored rows hold. A rule
    that does not compile (validation keeps such rules out of an apply) is
    left out and logged, never fatal."""
    routing = []
    for row in routing_rows:
        try:
            routing.append(routing_rule_of(row))
        except RuleError as error:
            log_event(
                logger, logging.WARNING, "routing.rule_skipped", rule=row["id"], error=str(error)
            )
    normalization = [normalization_rule_of(row) for row in normalization_rows]
    try:
        return Dialplan.of(trunks, routing, normalization)
    except NormalizationError as error:
        log_event(logger, logging.WARNING, "normalization.rules_skipped", error=str(error))
        return Dialplan.of(trunks, routing, ())
