"""The web app: SMEs, brokers and managers sign in and do their work in the browser. Plain
HTML forms that work without JavaScript; htmx, where present, refreshes parts in place."""

from fastapi import APIRouter

from api.web import auth, catalogue, decisions, exchanges, inbox, reports

router = APIRouter(include_in_schema=False)
router.include_router(auth.router)
router.include_router(inbox.router)
router.include_router(decisions.router)
router.include_router(exchanges.router)
router.include_router(catalogue.router)
router.include_router(reports.router)
