"""People: the admin lists, adds and disables users; each person sees who they are and
manages their own API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from loopline.api.auth import ApiKeys, Principal
from loopline.api.deps import PrincipalDep, SessionDep, WriterDep
from loopline.api.errors import FieldError, error_body, error_responses
from loopline.models import users as people

router = APIRouter(tags=["users"], responses=error_responses(401))

Username = Annotated[str, Path(max_length=people.USERNAME_CHARS)]
KeyId = Annotated[str, Path(max_length=24)]


class UserIn(BaseModel):
    """A new user; ``customers`` and ``reps`` scope a sales person's orders."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=people.USERNAME_CHARS)
    name: str = Field(min_length=1, max_length=200)
    roles: list[str] = Field(min_length=1, max_length=len(people.ROLES))
    lang: str = "en"
    customers: list[str] = Field(default_factory=list, max_length=1000)
    reps: list[str] = Field(default_factory=list, max_length=1000)
    email: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, max_length=200)


class UserPatch(BaseModel):
    """What to change of a user; a field left out stays as it is."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    roles: list[str] | None = Field(default=None, min_length=1, max_length=len(people.ROLES))
    lang: str | None = None
    customers: list[str] | None = Field(default=None, max_length=1000)
    reps: list[str] | None = Field(default=None, max_length=1000)
    email: str | None = Field(default=None, max_length=200)


class UserView(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int
    username: str
    name: str
    roles: list[str]
    lang: str
    customers: list[str]
    reps: list[str]
    email: str | None
    password: bool = Field(description="whether a password is set (never the password)")
    sso: bool = Field(description="whether the person signs in through OIDC")
    created_at: datetime
    disabled_at: datetime | None


class MeView(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    person: str | None
    user_id: int | None
    roles: list[str]
    lang: str | None
    scope: dict[str, list[str]] | None = Field(
        description="the customers and reps whose orders are visible; null: every order"
    )


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)


class KeyView(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    user: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewKeyView(KeyView):
    key: str = Field(description="the key itself: shown this once, stored only hashed")


def _person(session: Any, who: Principal) -> people.User:
    if who.user_id is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="API keys belong to people: sign in as a user"
        )
    user = session.get(people.User, who.user_id)
    if user is None or not user.active:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this user is disabled")
    return user  # type: ignore[no-any-return]


@router.get("/users", summary="Users (admin)", response_model=list[UserView])
def list_users(session: SessionDep, _: WriterDep) -> list[dict[str, Any]]:
    return [people.user_view(u) for u in people.list_users(session)]


@router.post(
    "/users",
    summary="Add a user (admin)",
    status_code=201,
    response_model=UserView,
    responses=error_responses(403, 422),
)
def add_user(body: UserIn, session: SessionDep, who: WriterDep) -> dict[str, Any] | JSONResponse:
    try:
        with session.begin():
            user = people.add_user(session, actor=who.name, **body.model_dump())
            return people.user_view(user)
    except people.UserError as exc:
        detail = [FieldError(field=exc.field, message=exc.message, location="body")]
        return JSONResponse(error_body(detail), status_code=422)


@router.patch(
    "/users/{username}",
    summary="Change a user's name, roles, language, scope or e-mail (admin)",
    response_model=UserView,
    responses=error_responses(403, 404, 422),
)
def update_user(
    username: Username, body: UserPatch, request: Request, session: SessionDep, who: WriterDep
) -> dict[str, Any] | JSONResponse:
    try:
        with session.begin():
            user = people.update_user(
                session, username=username, actor=who.name, **body.model_dump(exclude_unset=True)
            )
            if user is None:
                raise HTTPException(404, detail=f"no user '{username}'")
            view = people.user_view(user)
    except people.UserError as exc:
        detail = [FieldError(field=exc.field, message=exc.message, location="body")]
        return JSONResponse(error_body(detail), status_code=422)
    keys: ApiKeys = request.app.state.api_keys
    keys.forget()
    return view


@router.post(
    "/users/{username}/disable",
    summary="Disable a user (admin): their sessions and API keys stop working",
    response_model=UserView,
    responses=error_responses(403, 404),
)
def disable_user(
    username: Username, request: Request, session: SessionDep, who: WriterDep
) -> dict[str, Any]:
    with session.begin():
        user = people.disable_user(session, username=username, actor=who.name)
        if user is None:
            raise HTTPException(404, detail=f"no user '{username}'")
        view = people.user_view(user)
    keys: ApiKeys = request.app.state.api_keys
    keys.forget()
    return view


@router.get(
    "/me", summary="Who the caller is: person, roles, language, scope", response_model=MeView
)
def me(who: PrincipalDep) -> dict[str, Any]:
    scope = (
        None
        if who.scope is None
        else {"customers": sorted(who.scope.customers), "reps": sorted(who.scope.reps)}
    )
    return {
        "name": who.name,
        "person": who.person,
        "user_id": who.user_id,
        "roles": list(who.roles),
        "lang": who.lang,
        "scope": scope,
    }


@router.get(
    "/me/api-keys",
    summary="The caller's personal API keys, with when each was last used",
    response_model=list[KeyView],
    responses=error_responses(403),
)
def my_keys(session: SessionDep, who: PrincipalDep) -> list[dict[str, Any]]:
    return [people.key_view(k) for k in people.list_keys(session, user=_person(session, who))]


@router.post(
    "/me/api-keys",
    summary="Create a personal API key (the answer holds the key, shown this once)",
    status_code=201,
    response_model=NewKeyView,
    responses=error_responses(403, 422),
)
def create_key(body: KeyIn, session: SessionDep, who: PrincipalDep) -> dict[str, Any]:
    with session.begin():
        key, row = people.create_key(
            session, user=_person(session, who), name=body.name, actor=who.name
        )
        return {**people.key_view(row), "key": key}


@router.delete(
    "/me/api-keys/{key_id}",
    summary="Revoke one of the caller's API keys",
    status_code=204,
    responses=error_responses(403, 404),
)
def revoke_key(key_id: KeyId, request: Request, session: SessionDep, who: PrincipalDep) -> Response:
    with session.begin():
        row = people.revoke_key(session, key_id=key_id, actor=who.name, user=_person(session, who))
        if row is None:
            raise HTTPException(404, detail=f"no key {key_id}")
    keys: ApiKeys = request.app.state.api_keys
    keys.forget()
    return Response(status_code=204)
