"""People: users with roles, a language and (for sales) the customers or reps they own;
their passwords (argon2, through argon2-cffi) and personal API keys (hashed, revocable).

A personal API key is ``ll_<id>_<secret>``: the id finds the row, the SHA-256 of the whole
key is compared (a key is 32 random bytes, so a fast hash is as good as a slow one; a
password is not, so passwords get argon2). Neither the table nor a log holds a usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, ForeignKey, Integer, String, false, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from loopline.models.audit import record
from loopline.models.clock import utcnow
from loopline.models.records import Base, Order

# The roles a person may hold (api/auth.py has the same names; tokens are roles too).
ROLES = ("admin", "display", "production_manager", "purchasing", "sales")
# A person holding only these roles sees only the orders in their scope.
SCOPED_ROLES = frozenset({"sales"})
LANGS = ("en", "zh-CN")
USERNAME_CHARS = 100
KEY_PREFIX = "ll_"
KEY_ID_BYTES = 6
KEY_SECRET_BYTES = 32
# Why: a key used by a script every second would otherwise write a row per request.
KEY_TOUCH_EVERY = timedelta(minutes=1)
MIN_PASSWORD_CHARS = 10
# Actors the audit already knows that are not people.
RESERVED_NAMES = frozenset({"cli", "crm", "demo", "planner", "shop-floor", "system", "worker"})

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the user does not exist, so a wrong name costs as long as a wrong
# password (the time taken does not tell which names exist).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class User(Base):
    """A person who signs in (password or SSO) or calls the API with a personal key."""

    __tablename__ = "app_user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(USERNAME_CHARS), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[Any]] = mapped_column(default=list)
    lang: Mapped[str] = mapped_column(String(10), default="en")
    # Sales scope: the customer ids and the CRM rep names (``Order.sales_rep``) they own.
    customers: Mapped[list[Any]] = mapped_column(default=list)
    reps: Mapped[list[Any]] = mapped_column(default=list)
    email: Mapped[str | None] = mapped_column(String(200), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The OIDC issuer's ``sub`` for a person who signs in with SSO.
    oidc_subject: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    # Changes when the password, roles or scope change or the user is disabled: sessions
    # started before no longer match (api/auth.py compares it).
    stamp: Mapped[str] = mapped_column(String(32), default=lambda: secrets.token_hex(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    keys: Mapped[list[ApiKey]] = relationship(back_populates="user", order_by="ApiKey.created_at")

    @property
    def active(self) -> bool:
        """Whether the user may sign in and use their keys."""
        return self.disabled_at is None


class ApiKey(Base):
    """A personal API key: who it acts for, when it was last used, whether it is revoked."""

    __tablename__ = "api_key"
    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    user: Mapped[User] = relationship(back_populates="keys", lazy="joined")


class UserError(ValueError):
    """Input about a user that cannot be accepted; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class OrderScope:
    """The orders a scoped person may see: those of ``customers`` or of ``reps``."""

    customers: frozenset[str] = frozenset()
    reps: frozenset[str] = frozenset()

    def allows(self, *, customer_id: str | None, sales_rep: str | None) -> bool:
        """Whether an order of this customer and rep is in scope."""
        return customer_id in self.customers or (sales_rep is not None and sales_rep in self.reps)

    def allows_order(self, order: Order) -> bool:
        """Whether ``order`` is in scope."""
        return self.allows(customer_id=order.customer_id, sales_rep=order.sales_rep)

    def clause(self) -> ColumnElement[bool]:
        """The SQL condition on ``sales_order`` rows in scope."""
        parts: list[ColumnElement[bool]] = []
        if self.customers:
            parts.append(Order.customer_id.in_(sorted(self.customers)))
        if self.reps:
            parts.append(Order.sales_rep.in_(sorted(self.reps)))
        return or_(*parts) if parts else false()

    def order_ids(self, session: Session) -> set[str]:
        """The ids of every order in scope."""
        return set(session.scalars(select(Order.id).where(self.clause())))


def scope_of(user: User) -> OrderScope | None:
    """The user's scope, or None when they see every order (any role beyond sales)."""
    if not set(user.roles) <= SCOPED_ROLES:
        return None
    return OrderScope(frozenset(user.customers), frozenset(user.reps))


def _clean_roles(roles: Iterable[str]) -> list[str]:
    out: list[str] = []
    for role in roles:
        if role not in ROLES:
            raise UserError("roles", f"unknown role '{role}'; use {', '.join(ROLES)}")
        if role not in out:
            out.append(role)
    if not out:
        raise UserError("roles", "give at least one role")
    return out


def _clean_username(username: str) -> str:
    name = username.strip()
    if not name or len(name) > USERNAME_CHARS or any(c.isspace() or c == ":" for c in name):
        raise UserError("username", f"1 to {USERNAME_CHARS} characters, no spaces or ':'")
    if name in ROLES or name in RESERVED_NAMES:
        # The audit names role tokens and the system by these: a person must differ.
        raise UserError("username", f"'{name}' is reserved; choose another")
    return name


def hash_password(password: str) -> str:
    """The argon2id hash of ``password``; refuses one too short to be worth hashing."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserError("password", f"at least {MIN_PASSWORD_CHARS} characters")
    return _hasher.hash(password)


def add_user(
    session: Session,
    *,
    username: str,
    name: str,
    roles: Sequence[str],
    actor: str,
    lang: str = "en",
    customers: Sequence[str] = (),
    reps: Sequence[str] = (),
    email: str | None = None,
    password: str | None = None,
    oidc_subject: str | None = None,
) -> User:
    """Create a user (audited); ``UserError`` names the field that is wrong."""
    username = _clean_username(username)
    if not name.strip():
        raise UserError("name", "must not be empty")
    if lang not in LANGS:
        raise UserError("lang", f"use one of {', '.join(LANGS)}")
    clean_roles = _clean_roles(roles)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserError("username", f"'{username}' exists already")
    user = User(
        username=username,
        name=name.strip(),
        roles=clean_roles,
        lang=lang,
        customers=sorted(set(customers)),
        reps=sorted(set(reps)),
        email=email,
        password_hash=hash_password(password) if password else None,
        oidc_subject=oidc_subject,
    )
    session.add(user)
    session.flush()
    record(
        session,
        actor=actor,
        action="user.added",
        entity="user",
        entity_id=username,
        details={"roles": clean_roles, "customers": user.customers, "reps": user.reps},
    )
    return user


def get_user(session: Session, *, username: str) -> User | None:
    """The user named ``username``, or None."""
    return session.scalar(select(User).where(User.username == username))


def list_users(session: Session, *, include_disabled: bool = True) -> list[User]:
    """Every user by username."""
    query = select(User).order_by(User.username)
    if not include_disabled:
        query = query.where(User.disabled_at.is_(None))
    return list(session.scalars(query))


def disable_user(session: Session, *, username: str, actor: str) -> User | None:
    """Disable a user: their sessions and keys stop working. None: no such user."""
    user = get_user(session, username=username)
    if user is None:
        return None
    if user.disabled_at is None:
        user.disabled_at = utcnow()
        user.stamp = secrets.token_hex(8)
        record(
            session,
            actor=actor,
            action="user.disabled",
            entity="user",
            entity_id=username,
            details={},
        )
    return user


def update_user(
    session: Session,
    *,
    username: str,
    actor: str,
    name: str | None = None,
    roles: Sequence[str] | None = None,
    lang: str | None = None,
    customers: Sequence[str] | None = None,
    reps: Sequence[str] | None = None,
    email: str | None = None,
) -> User | None:
    """Change what is given of a user (audited with old and new); their sessions end when
    their roles or scope change. None: no such user; ``UserError`` names a bad field."""
    user = get_user(session, username=username)
    if user is None:
        return None
    changes: dict[str, Any] = {}
    if name is not None:
        if not name.strip():
            raise UserError("name", "must not be empty")
        changes["name"] = name.strip()
    if roles is not None:
        changes["roles"] = _clean_roles(roles)
    if lang is not None:
        if lang not in LANGS:
            raise UserError("lang", f"use one of {', '.join(LANGS)}")
        changes["lang"] = lang
    if customers is not None:
        changes["customers"] = sorted(set(customers))
    if reps is not None:
        changes["reps"] = sorted(set(reps))
    if email is not None:
        changes["email"] = email or None
    changed = {k: v for k, v in changes.items() if getattr(user, k) != v}
    if not changed:
        return user
    details = {k: {"old": getattr(user, k), "new": v} for k, v in changed.items()}
    for key, value in changed.items():
        setattr(user, key, value)
    if {"roles", "customers", "reps"} & set(changed):
        user.stamp = secrets.token_hex(8)  # signed-in browsers sign in again
    record(
        session,
        actor=actor,
        action="user.changed",
        entity="user",
        entity_id=username,
        details=details,
    )
    return user


def set_password(session: Session, *, user: User, password: str, actor: str) -> None:
    """Set a user's password; their other sessions end."""
    user.password_hash = hash_password(password)
    user.stamp = secrets.token_hex(8)
    record(
        session,
        actor=actor,
        action="user.password_set",
        entity="user",
        entity_id=user.username,
        details={},
    )


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    """The active user with this name and password, or None (in about the same time)."""
    user = get_user(session, username=username.strip())
    stored = user.password_hash if user is not None and user.active else None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if stored is None or user is None:
        return None
    if _hasher.check_needs_rehash(stored):  # parameters were raised since it was hashed
        user.password_hash = _hasher.hash(password)
    return user


def user_for_oidc(
    session: Session, *, subject: str, username: str | None, email: str | None
) -> User | None:
    """The active user an SSO sign-in stands for: the one linked to ``subject``, else an
    unlinked user whose username or e-mail the IdP names (then linked, audited); None when
    no user was set up for this person (SSO proves who they are, the table grants roles)."""
    user = session.scalar(select(User).where(User.oidc_subject == subject))
    if user is None:
        candidates = [
            u
            for u in session.scalars(select(User).where(User.oidc_subject.is_(None)))
            if (username and u.username == username)
            or (email and u.email and u.email.casefold() == email.casefold())
        ]
        if len(candidates) != 1:
            return None
        user = candidates[0]
        user.oidc_subject = subject
        record(
            session,
            actor=user.username,
            action="user.sso_linked",
            entity="user",
            entity_id=user.username,
            details={"subject": subject},
        )
    return user if user.active else None


def key_hash(key: str) -> str:
    """The SHA-256 of a key, as stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, *, user: User, name: str, actor: str) -> tuple[str, ApiKey]:
    """A new personal key for ``user``; returns the key (shown once) and its record."""
    if not name.strip() or len(name) > 100:
        raise UserError("name", "1 to 100 characters")
    key_id = secrets.token_hex(KEY_ID_BYTES)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(KEY_SECRET_BYTES)}"
    row = ApiKey(id=key_id, user=user, name=name.strip(), key_hash=key_hash(key))
    session.add(row)
    session.flush()
    record(
        session,
        actor=actor,
        action="api_key.created",
        entity="user",
        entity_id=user.username,
        details={"key": key_id, "name": row.name},
    )
    return key, row


def key_id_of(key: str) -> str | None:
    """The id part of a personal key, or None when ``key`` is not shaped like one."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, _ = key[len(KEY_PREFIX) :].partition("_")
    return key_id if sep and len(key_id) == 2 * KEY_ID_BYTES else None


def check_key(session: Session, *, key: str, now: datetime) -> ApiKey | None:
    """The live key record ``key`` matches (its user active), noting its use; else None."""
    key_id = key_id_of(key)
    if key_id is None:
        return None
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    if not hmac.compare_digest(row.key_hash, key_hash(key)):
        return None
    if row.last_used_at is None or now - row.last_used_at >= KEY_TOUCH_EVERY:
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        row.last_used_at = now
    return row


def list_keys(session: Session, *, user: User | None = None) -> list[ApiKey]:
    """Keys (of ``user``, else everyone's), newest first, revoked ones included."""
    query = select(ApiKey).order_by(ApiKey.created_at.desc())
    if user is not None:
        query = query.where(ApiKey.user_id == user.id)
    return list(session.scalars(query))


def revoke_key(
    session: Session, *, key_id: str, actor: str, user: User | None = None
) -> ApiKey | None:
    """Revoke a key (only ``user``'s when given); None when there is no such live key."""
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None or (user is not None and row.user_id != user.id):
        return None
    row.revoked_at = utcnow()
    record(
        session,
        actor=actor,
        action="api_key.revoked",
        entity="user",
        entity_id=row.user.username,
        details={"key": key_id},
    )
    return row


def user_view(user: User) -> dict[str, Any]:
    """A user as the API and the admin screen show them (never a hash)."""
    return {
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "roles": list(user.roles),
        "lang": user.lang,
        "customers": list(user.customers),
        "reps": list(user.reps),
        "email": user.email,
        "password": user.password_hash is not None,
        "sso": user.oidc_subject is not None,
        "created_at": user.created_at,
        "disabled_at": user.disabled_at,
    }


def key_view(row: ApiKey) -> dict[str, Any]:
    """A key as listed (never the key or its hash)."""
    return {
        "id": row.id,
        "user": row.user.username,
        "name": row.name,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
    }
