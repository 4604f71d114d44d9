"""Dashboard users: first-run setup and password login, with their lockout, metrics and audit entries.

Setup creates the first administrator once, only from a trusted network or with the setup token the
server logs at start-up. Login locks a username per source address after repeated failures (a trusted
network is never locked out, so the owner at home can always sign in); an unknown user and a wrong
password cost the same time and give the same answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nekzus.auth.service import USERNAME_RE
from nekzus.errors import Forbidden, Invalid, RateLimited, Unauthorized

if TYPE_CHECKING:
    from nekzus.auth.models import User
    from nekzus.auth.service import AuthService

MIN_PASSWORD = 8
MAX_PASSWORD = 1024


def _bad_credentials() -> Unauthorized:
    return Unauthorized("Invalid username or password", code="INVALID_CREDENTIALS")


async def setup_first_user(
    auth: AuthService, username: str | None, password: str | None, *, setup_token: str, ip: str
) -> None:
    """Create the first admin user; refused once a user exists, or from an untrusted source without the
    setup token."""
    if await auth.user_count() > 0:
        await auth.audit("auth.setup", actor="anonymous", ip=ip, details={"reason": "done"}, success=False)
        raise Invalid(
            "Setup has already been completed. Please use the login page.", code="SETUP_ALREADY_COMPLETED"
        )
    if not auth.trusted(ip) and not auth.setup_token_ok(setup_token):
        await auth.audit(
            "auth.setup", actor="anonymous", ip=ip, details={"reason": "untrusted"}, success=False
        )
        raise Forbidden(
            "Setup is only allowed from a trusted network or with the setup token from the server log"
        )
    if not username or not password:
        raise Invalid("username and password are required", code="MISSING_FIELDS")
    if not USERNAME_RE.match(username):
        raise Invalid(
            "username must be 1-255 characters of letters, digits, _ . -", code="USER_CREATION_FAILED"
        )
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Invalid(
            f"password must be between {MIN_PASSWORD} and {MAX_PASSWORD} characters",
            code="USER_CREATION_FAILED",
        )
    await auth.create_first_user(username, password)
    await auth.audit("auth.setup", actor=f"user-{username}", target=f"user-{username}", ip=ip)


async def login(auth: AuthService, username: str, password: str, *, ip: str) -> tuple[str, User]:
    """A session token for valid credentials (and the user); lockout and failures are audited."""
    if len(password) > MAX_PASSWORD or len(username) > 255:
        raise _bad_credentials()
    locked = auth.lockout.locked_for(username, ip, trusted=auth.trusted(ip))
    if locked > 0:
        auth.metrics.auth_login_total.labels("locked").inc()
        await auth.audit(
            "auth.login", actor=f"user-{username}", ip=ip, details={"reason": "locked"}, success=False
        )
        raise RateLimited(
            "Too many failed login attempts, try again later",
            code="RATE_LIMITED",
            headers={"Retry-After": str(max(1, int(locked)))},
        )
    user = await auth.find_user(username)
    usable = user is not None and user.is_active
    ok = await auth.passwords.verify(user.password_hash if usable and user else None, password)
    if not ok or user is None:
        just_locked = auth.lockout.failed(username, ip)
        auth.metrics.auth_login_total.labels("failure").inc()
        await auth.audit(
            "auth.login",
            actor=f"user-{username}",
            ip=ip,
            details={"reason": "bad credentials", "locked": just_locked},
            success=False,
        )
        raise _bad_credentials()
    auth.lockout.succeeded(username, ip)
    user = await auth.mark_login(user)
    token = auth.issue_user_token(username)
    auth.metrics.auth_login_total.labels("success").inc()
    await auth.audit("auth.login", actor=f"user-{username}", target=f"user-{username}", ip=ip)
    return token, user
