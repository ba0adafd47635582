import type { CardRef } from "./api";
import { cardHref, typeLabel } from "./cards";
import { t } from "./i18n";

export function CardLink({ card }: { card: CardRef }) {
  const href = cardHref(card);
  if (href === null || card.name === null) {
    return <span className="card-hidden">{t("hiddenCard")}</span>;
  }
  return (
    <a href={href} className="card-link">
      <span className="card-type">{typeLabel(card.type)}</span> {card.name}
    </a>
  );
}
