import type { CardRef, CardType } from "./api";
import { t, type Key } from "./i18n";

const TYPE_LABELS: Record<CardType, Key> = { contact: "contact", account: "account", lead: "lead" };

export function typeLabel(type: CardType): string {
  return t(TYPE_LABELS[type]);
}

export function cardHref(card: CardRef): string | null {
  return card.id === null ? null : `#/card/${card.type}/${card.id}`;
}
