"""Per-line broker accounts: Mosquitto's password file and ACL file, edited in place.

Each line's sensor signs in as the line (user ``L3``) and may publish only under its own
topics, ``loopline/v1/{site}/{line}/#``; the ingest's account (the user in
``LOOPLINE_MQTT_URL``) reads everything and writes only its status. Mosquitto rereads both
files on SIGHUP.

The password file holds Mosquitto 2's ``$7$`` hashes: PBKDF2-HMAC-SHA512, 101 iterations,
a 12-byte salt, ``user:$7$101$<base64 salt>$<base64 key>``, as ``mosquitto_passwd``
writes them. Lines and ACL sections this module did not write are kept as they are.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# mosquitto_passwd's choices (Mosquitto 2, src/password_mosq.c): PW_DEFAULT_ITERATIONS, SALT_LEN.
PBKDF2_ITERATIONS: Final = 101
SALT_BYTES: Final = 12
PASSWORD_BYTES: Final = 24  # of randomness in a generated password (32 URL-safe chars)
NEW_FILE_MODE: Final = 0o640  # the broker's group may read; nobody else

NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# What the ingest publishes (ingest/mqtt/consumer.py STATUS_TOPIC, its Will too) and may
# publish as a Sparkplug B host (rebirth requests, NCMD on spBv1.0/{group}/NCMD/{edge}, and
# its STATE on spBv1.0/STATE/{host_id}: ingest/sparkplug/host.py).
INGEST_WRITES: Final = ("loopline/v1/_system/#", "spBv1.0/+/NCMD/+", "spBv1.0/STATE/+")
SYSTEM_SITE: Final = "_system"
_MARK: Final = "# loopline"


class DeviceError(ValueError):
    """A device account cannot be added, removed or read; the message says why."""


@dataclass(frozen=True)
class Account:
    """One account in the ACL file that Loopline wrote: a line's sensor or the ingest."""

    username: str
    role: str  # "line" or "ingest"
    writes: tuple[str, ...]
    reads: tuple[str, ...]
    has_password: bool


def line_topic(site: str, line: str) -> str:
    """The topics a line's sensor may publish to: ``loopline/v1/{site}/{line}/#``."""
    return f"loopline/v1/{site}/{line}/#"


def generate_password() -> str:
    """A fresh random password (URL-safe, fits in an MQTT URL unquoted)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Mosquitto 2's ``$7$`` hash of ``password``, as ``mosquitto_passwd`` makes it."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"$7${PBKDF2_ITERATIONS}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (other hash kinds: False)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt, key = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(got, key)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def check_name(field: str, value: str) -> str:
    """``value`` if it is a topic name (``[A-Za-z0-9_-]{1,64}``), else DeviceError."""
    if not NAME_RE.fullmatch(value):
        raise DeviceError(f"{field} {value!r} is not a name of [A-Za-z0-9_-], 1-64 chars")
    return value


# --- the files ---------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DeviceError(f"cannot read {path}: {exc.strerror or exc}") from None


def _write_lines(path: Path, lines: list[str]) -> None:
    """Replace ``path`` at once (the broker never reads half a file), keeping mode and owner."""
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n" if lines else "")
        os.chmod(tmp, old.st_mode & 0o7777 if old else NEW_FILE_MODE)
        if old is not None:
            # Why: as root we would otherwise hand the broker's file to root.
            with contextlib.suppress(PermissionError):
                os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise DeviceError(f"cannot write {path}: {exc.strerror or exc}") from None


def _passwords(lines: list[str]) -> dict[str, str]:
    """``{username: hash}`` of a password file's lines (comments and blanks skipped)."""
    found: dict[str, str] = {}
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#") and ":" in line:
            user, hashed = line.split(":", 1)
            found[user] = hashed
    return found


def _set_password(lines: list[str], username: str, hashed: str | None) -> list[str]:
    """The file's lines with ``username``'s entry replaced (``None``: removed)."""
    kept = [ln for ln in lines if ln.split(":", 1)[0] != username or ln.lstrip().startswith("#")]
    return kept + ([f"{username}:{hashed}"] if hashed is not None else [])


def _sections(lines: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """An ACL file as its head (before any ``user``) and ``(username, lines)`` sections.

    Comment lines just above a ``user`` line belong to that user's section.
    """
    head: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    pending: list[str] = []
    for line in lines:
        words = line.split(maxsplit=1)
        if words and words[0] == "user" and len(words) == 2:
            sections.append((words[1].strip(), [*pending, line]))
            pending = []
        elif line.lstrip().startswith("#") or not line.strip():
            pending.append(line)
        else:
            (sections[-1][1] if sections else head).extend(pending)
            pending = []
            (sections[-1][1] if sections else head).append(line)
    (sections[-1][1] if sections else head).extend(pending)
    # Why: _join puts one blank line between sections; kept blanks would pile up per edit.
    return _trimmed(head), [(user, _trimmed(body)) for user, body in sections]


def _trimmed(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _join(head: list[str], sections: list[tuple[str, list[str]]]) -> list[str]:
    out = list(head)
    for _, body in sections:
        if out and out[-1].strip():
            out.append("")
        out.extend(body)
    return out


def _section(
    username: str, role: str, *, writes: tuple[str, ...], reads: tuple[str, ...]
) -> list[str]:
    return [
        f"{_MARK} {role}",
        f"user {username}",
        *(f"topic read {t}" for t in reads),
        *(f"topic write {t}" for t in writes),
    ]


def _parse_section(username: str, body: list[str], has_password: bool) -> Account | None:
    """The account a section of ours describes; None for sections Loopline did not write."""
    role = next((ln.removeprefix(_MARK).strip() for ln in body if ln.startswith(_MARK)), None)
    if role not in ("line", "ingest"):
        return None
    grants = [ln.split(maxsplit=2) for ln in body if ln.startswith("topic ")]
    return Account(
        username=username,
        role=role,
        writes=tuple(g[2] for g in grants if len(g) == 3 and g[1] in ("write", "readwrite")),
        reads=tuple(g[2] for g in grants if len(g) == 3 and g[1] in ("read", "readwrite")),
        has_password=has_password,
    )


# --- accounts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceFiles:
    """The broker's password file and ACL file, which Loopline edits."""

    password_file: Path
    acl_file: Path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Why a lock: two `devices add` at once would each drop the other's account.
        lock_path = self.password_file.with_name(f".{self.password_file.name}.lock")
        try:
            lock = lock_path.open("a")
        except OSError as exc:
            raise DeviceError(f"cannot lock {lock_path}: {exc.strerror or exc}") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def accounts(self) -> list[Account]:
        """The accounts Loopline wrote into the ACL file, in file order."""
        passwords = _passwords(_read_lines(self.password_file))
        _, sections = _sections(_read_lines(self.acl_file))
        found = (_parse_section(u, body, u in passwords) for u, body in sections)
        return [a for a in found if a is not None]

    def add_line(self, *, line: str, site: str, rotate: bool = False) -> str:
        """Create (or with ``rotate``, renew) the line's account; its new password."""
        check_name("line", line)
        check_name("site", site)
        if site == SYSTEM_SITE:
            raise DeviceError(f"site {site!r} is reserved for Loopline's own topics")
        with self._locked():
            pw_lines = _read_lines(self.password_file)
            head, sections = _sections(_read_lines(self.acl_file))
            existing = dict(sections).get(line)
            if existing is not None and not _is_line(existing):
                raise DeviceError(f"{line!r} is a broker account Loopline did not make for a line")
            if not rotate and (existing is not None or line in _passwords(pw_lines)):
                raise DeviceError(
                    f"line {line} already has a broker account; `--rotate` gives it a new password"
                )
            password = generate_password()
            sections = [(u, b) for u, b in sections if u != line]
            sections.append(
                (line, _section(line, "line", writes=(line_topic(site, line),), reads=()))
            )
            _write_lines(self.acl_file, _join(head, sections))
            _write_lines(self.password_file, _set_password(pw_lines, line, hash_password(password)))
        return password

    def remove_line(self, line: str) -> None:
        """Delete the line's account and ACL section; DeviceError when it has none."""
        with self._locked():
            pw_lines = _read_lines(self.password_file)
            head, sections = _sections(_read_lines(self.acl_file))
            kept = [(u, b) for u, b in sections if u != line or not _is_line(b)]
            if len(kept) == len(sections):
                raise DeviceError(
                    f"line {line} has no broker account (see `loopline devices list`)"
                )
            _write_lines(self.acl_file, _join(head, kept))
            _write_lines(self.password_file, _set_password(pw_lines, line, None))

    def ensure_ingest(self, *, username: str, password: str | None) -> bool:
        """Give the ingest's account read on every topic (and its password); True if changed.

        An ACL section for that user that Loopline did not write is the operator's: kept.
        """
        if not username or ":" in username or any(c.isspace() for c in username):
            raise DeviceError(
                f"the ingest's user {username!r} (LOOPLINE_MQTT_URL) cannot be an ACL user"
            )
        with self._locked():
            changed = False
            pw_lines = _read_lines(self.password_file)
            head, sections = _sections(_read_lines(self.acl_file))
            existing = [body for user, body in sections if user == username]
            if any(_is_line(body) for body in existing):
                raise DeviceError(f"the ingest's user {username!r} is also a line's account")
            wanted = _section(username, "ingest", writes=INGEST_WRITES, reads=("#",))
            hand_written = any(f"{_MARK} ingest" not in body for body in existing)
            if not hand_written and existing != [wanted]:
                sections = [(u, b) for u, b in sections if u != username] + [(username, wanted)]
                _write_lines(self.acl_file, _join(head, sections))
                changed = True
            current = _passwords(pw_lines).get(username)
            if password is not None and (current is None or not verify_password(password, current)):
                _write_lines(
                    self.password_file, _set_password(pw_lines, username, hash_password(password))
                )
                changed = True
            return changed


def _is_line(body: list[str]) -> bool:
    return f"{_MARK} line" in body


def reload_broker(pid_file: Path) -> int:
    """Send SIGHUP to the Mosquitto whose pid is in ``pid_file`` (it rereads both files)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError) as exc:
        raise DeviceError(f"cannot read a pid from {pid_file}: {exc}") from None
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise DeviceError(f"cannot signal the broker (pid {pid}): {exc.strerror or exc}") from None
    return pid
