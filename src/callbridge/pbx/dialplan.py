"""What decides where a call goes, as one immutable snapshot: the external
lines, the routing rules and the normalization rules, read from the store
together and swapped whole (calls in progress keep the one they began with)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..logs import log_event
from ..store.models import NormalizationRule as NormalizationRow
from ..store.models import RoutingRule as RoutingRow
from .normalize import NormalizationError, NormalizationRule, Normalizer
from .routing import Action, MaskError, RewriteError, Router, RoutingRule, parse_mask, parse_rewrite
from .trunks import Trunk

logger = logging.getLogger("callbridge.pbx")

DEFAULT_REGION = "US"


@dataclass(frozen=True, slots=True)
class Dialplan:
    trunks: Mapping[int, Trunk] = field(default_factory=dict)
    router: Router = field(default_factory=lambda: Router(()))
    normalizer: Normalizer = field(default_factory=lambda: Normalizer((), {}, DEFAULT_REGION))

    def trunk_for_source(self, host: str) -> Trunk | None:
        """The active external line a request from `host` belongs to."""
        for trunk in self.trunks.values():
            if trunk.active and trunk.sends_from(host):
                return trunk
        return None

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


def dialplan_of(
    trunks: Iterable[Trunk],
    routing_rows: Iterable[RoutingRow],
    normalization_rows: Iterable[NormalizationRow],
) -> Dialplan:
    """The dialplan of `trunks` and the rules the rows hold. A rule that does
    not compile (validation keeps such rules out of an apply) is left out and
    logged, never fatal."""
    routing = []
    for row in routing_rows:
        try:
            routing.append(
                RoutingRule(
                    id=row.id,
                    name=row.name,
                    direction=row.direction,  # type: ignore[arg-type]
                    external_line_id=row.external_line_id,
                    priority=row.priority,
                    action=Action(row.action_type, row.action_target),  # type: ignore[arg-type]
                    source_mask=parse_mask(row.source_mask),
                    destination_mask=parse_mask(row.destination_mask),
                    destination_rewrite=parse_rewrite(row.destination_rewrite),
                    is_default=row.is_default,
                )
            )
        except (MaskError, RewriteError) as error:
            log_event(
                logger, logging.WARNING, "routing.rule_skipped", rule=row.id, error=str(error)
            )
    normalization = [
        NormalizationRule(
            id=row.id,
            name=row.name,
            priority=row.priority,
            direction=row.direction,  # type: ignore[arg-type]
            external_line_id=row.external_line_id,
            fields=frozenset(row.fields or ()),  # type: ignore[arg-type]
            method=row.method,  # type: ignore[arg-type]
            match=row.match,
            replacement=row.replacement,
        )
        for row in normalization_rows
    ]
    try:
        return Dialplan.of(trunks, routing, normalization)
    except NormalizationError as error:
        log_event(logger, logging.WARNING, "normalization.rules_skipped", error=str(error))
        return Dialplan.of(trunks, routing, ())
