"""Who may see which exchange, written once as a query: the list, the detail and every page
narrow it further, so the rule cannot drift between them."""

from sqlalchemy import false, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from ce4big.domain import Role
from ce4big.errors import NotFound
from ce4big.models import Exchange, ExchangeCandidate, Organisation, User


def visible_exchanges(user: User) -> SelectOfScalar[Exchange]:
    """Managers and admins see every exchange; an SME, its organisation's; a broker, those of
    their cluster and those with a candidate in their cluster (as host)."""
    query = select(Exchange)
    if user.role in (Role.MANAGER, Role.ADMIN):
        return query
    if user.role == Role.SME:
        if user.organisation_id is None:
            return query.where(false())
        return query.where(Exchange.organisation_id == user.organisation_id)
    if user.role == Role.BROKER and user.cluster_id is not None:
        hosted = (
            select(ExchangeCandidate.exchange_id)
            .join(Organisation, col(Organisation.id) == ExchangeCandidate.organisation_id)
            .where(Organisation.cluster_id == user.cluster_id)
        )
        return query.where(
            or_(col(Exchange.home_cluster) == user.cluster_id, col(Exchange.id).in_(hosted))
        )
    return query.where(false())


def visible_exchange(*, session: Session, user: User, exchange_id: int) -> Exchange:
    """One exchange the user may see; one they may not is as unknown as one that does not
    exist (NotFound either way)."""
    exchange = session.exec(visible_exchanges(user).where(Exchange.id == exchange_id)).first()
    if exchange is None:
        raise NotFound(f"no exchange {exchange_id}")
    return exchange
