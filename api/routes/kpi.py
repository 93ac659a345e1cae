"""KPIs: the managers' figures with their weekly trends (the same as the /kpi screen)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from loopline.api.deps import PrincipalDep, SessionDep
from loopline.api.errors import FieldError, error_body, error_responses
from loopline.api.schemas import KpiReportView
from loopline.models.clock import utcnow
from loopline.models.kpi import DEFAULT_WEEKS, PERIODS_WEEKS, kpi_report

router = APIRouter(prefix="/kpi", tags=["kpi"], responses=error_responses(401))


@router.get(
    "",
    summary="On-time delivery, lead time, promise reliability, inventory turns, OEE per line, "
    "satisfaction and open alerts, over the last `weeks` weeks (4, 8, 13, 26 or 52) with "
    "weekly trends",
    response_model=KpiReportView,
)
def kpi(session: SessionDep, _: PrincipalDep, weeks: int = DEFAULT_WEEKS) -> Any:
    if weeks not in PERIODS_WEEKS:
        message = f"one of {', '.join(map(str, PERIODS_WEEKS))}"
        return JSONResponse(
            error_body([FieldError(field="weeks", message=message, location="query")]),
            status_code=422,
        )
    # Records carry wall-clock time (models/followup.py), so the report is cut on it.
    report: dict[str, Any] = dict(kpi_report(session, now=utcnow(), weeks=weeks))
    return report
