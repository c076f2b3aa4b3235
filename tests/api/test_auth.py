"""B11-B14: bearer JWT verification in hs256 and jwks modes; A10: user provisioning from (iss, sub)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import JwksKeys
from db.models import User
from db.users import Identity, UserDirectory
from settings import DEV_JWT_SECRET, Settings
from tests.support.api import assert_error, bearer, serve

STATUS = f"/api/ai/async/status/{uuid.uuid4()}"
ISSUER = "https://cognito-idp.ap-northeast-1.amazonaws.com/pool"
AUDIENCE = "client-123"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None = None) -> str:
    """A JWT built by hand (pyjwt refuses to sign the malicious ones)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest() if hmac_key else b""
    return f"{signing_input}.{_b64(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 600} | overrides


def hs(secret: str = DEV_JWT_SECRET, **overrides: Any) -> dict[str, str]:
    token = jwt.encode({k: v for k, v in claims(**overrides).items() if v is not None}, secret, "HS256")
    return {"Authorization": f"Bearer {token}"}


async def counts(engine: AsyncEngine) -> tuple[int, int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM rate_limit_windows),"
                    " (SELECT count(*) FROM processing_states)"
                )
            )
        ).one()
    return row[0], row[1], row[2]


# ---------------------------------------------------------------------------------------------- hs256 mode


async def test_missing_or_malformed_header_is_401_and_writes_nothing(
    api: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    body = {"type": "ACTION_GENERATION", "params": {"subGoalId": str(uuid.uuid4())}}
    for headers in (
        {},
        {"Authorization": "Basic YWxpY2U6cHc="},
        {"Authorization": "Bearer "},
        {"Authorization": "x"},
    ):
        for response in (
            await api.post("/api/ai/async/generate", json=body, headers=headers),
            await api.get(STATUS, headers=headers),
        ):
            error = assert_error(response, 401, "UNAUTHORIZED")
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert error["message"] == "認証が必要です。有効なJWTトークンを提供してください"
            assert "ratelimit" not in response.headers
    assert await counts(clean_db) == (0, 0, 0)


async def test_bad_signature_missing_claims_and_not_yet_valid_are_unauthorized(
    api: httpx.AsyncClient,
) -> None:
    now = int(time.time())
    for headers in (
        hs(secret="another-secret-of-sufficient-length-0123456789"),
        hs(sub=None),
        hs(sub=""),
        hs(sub=42),
        hs(sub="x" * 256),
        hs(exp=None),
        hs(exp="tomorrow"),
        hs(nbf=now + 600),
        {"Authorization": "Bearer not.a.jwt"},
    ):
        response = await api.get(STATUS, headers=headers)
        assert_error(response, 401, "UNAUTHORIZED")
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_token_expired_five_minutes_ago(api: httpx.AsyncClient) -> None:
    now = int(time.time())
    response = await api.get(STATUS, headers=hs(exp=now - 300, iat=now - 900))
    error = assert_error(response, 401, "TOKEN_EXPIRED")
    assert error["message"] == "トークンの有効期限が切れています。再ログインしてください"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    # An expired token with a bad signature is not "otherwise valid".
    forged = hs(secret="another-secret-of-sufficient-length-0123456789", exp=now - 300, iat=now - 900)
    assert_error(await api.get(STATUS, headers=forged), 401, "UNAUTHORIZED")


async def test_clock_leeway_and_nbf(api: httpx.AsyncClient) -> None:
    now = int(time.time())
    # Within the default 30 s leeway: accepted (404: the job does not exist).
    assert (await api.get(STATUS, headers=hs(exp=now - 10, iat=now - 100))).status_code == 404
    assert (await api.get(STATUS, headers=hs(nbf=now + 10))).status_code == 404
    assert_error(await api.get(STATUS, headers=hs(exp=now - 40, iat=now - 100)), 401, "TOKEN_EXPIRED")


async def test_a_token_may_live_at_most_the_maximum_lifetime(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    now = int(time.time())
    async with serve(api_settings(jwt_max_lifetime_seconds=3600, jwt_leeway_seconds=30)) as http:
        # exp within max lifetime + leeway of now: accepted (404: the job does not exist).
        assert (await http.get(STATUS, headers=hs(exp=now + 3600 + 20))).status_code == 404
        for exp in (now + 3600 + 60, 10**30, float("inf"), float("nan")):
            response = await http.get(STATUS, headers=hs(exp=exp))
            assert_error(response, 401, "UNAUTHORIZED")
            assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_default_maximum_lifetime_is_a_day(api: httpx.AsyncClient) -> None:
    now = int(time.time())
    assert (await api.get(STATUS, headers=hs(exp=now + 86_400))).status_code == 404
    assert_error(await api.get(STATUS, headers=hs(exp=now + 2 * 86_400)), 401, "UNAUTHORIZED")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_only_hs256_is_accepted_in_hs256_mode(api: httpx.AsyncClient) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs256 = jwt.encode(claims(), private, "RS256")
    hs512 = jwt.encode(claims(), DEV_JWT_SECRET, "HS512")  # the right secret, the wrong algorithm
    none = raw_token({"alg": "none", "typ": "JWT"}, claims())
    for token in (rs256, hs512, none, none.rstrip(".") + "."):
        assert_error(await api.get(STATUS, headers={"Authorization": f"Bearer {token}"}), 401, "UNAUTHORIZED")


async def test_configured_issuer_applies_in_hs256_mode(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    async with serve(api_settings(jwt_issuer="dev-issuer")) as http:
        assert_error(await http.get(STATUS, headers=bearer("alice")), 401, "UNAUTHORIZED")
        assert (await http.get(STATUS, headers=bearer("alice", issuer="dev-issuer"))).status_code == 404


# ---------------------------------------------------------------------------------------------- provisioning


async def test_first_request_creates_the_user_once_even_when_concurrent(
    api: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    headers = bearer("new-user", issuer="iss-a", extra={"email": "a@example.com", "name": "A"})
    responses = await asyncio.gather(*(api.get(STATUS, headers=headers) for _ in range(10)))
    assert {r.status_code for r in responses} == {404}
    # The same subject under another issuer is another user.
    assert (await api.get(STATUS, headers=bearer("new-user"))).status_code == 404
    async with clean_db.connect() as conn:
        rows = (await conn.execute(select(User.issuer, User.subject, User.email, User.name))).all()
    assert sorted(rows) == [("", "new-user", None, None), ("iss-a", "new-user", "a@example.com", "A")]


async def test_concurrent_first_requests_from_two_app_instances(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    async with serve(api_settings()) as a, serve(api_settings()) as b:
        await asyncio.gather(*(http.get(STATUS, headers=bearer("twin")) for http in (a, b) for _ in range(5)))
    async with clean_db.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(User))).scalar_one() == 1


# ---------------------------------------------------------------------------------------------- jwks mode


class JwksServer:
    """A loopback HTTP server serving a JWKS document that the test can change; counts fetches."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def publish(self, *keys: tuple[str, Any, str]) -> None:
        jwks = []
        for kid, private, alg in keys:
            jwk = json.loads(jwt.get_algorithm_by_name(alg).to_jwk(private.public_key()))
            jwks.append(jwk | {"kid": kid, "use": "sig"})
        self.document = {"keys": jwks}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def jwks_server(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Iterator[JwksServer]:
    server = JwksServer()
    server.publish(("rsa-1", rsa_key, "RS256"), ("ec-1", ec_key, "ES256"))
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest_asyncio.fixture
async def jwks_api(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings], jwks_server: JwksServer
) -> AsyncIterator[httpx.AsyncClient]:
    settings = api_settings(
        auth_mode="jwks", jwt_jwks_url=jwks_server.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE
    )
    async with serve(settings) as http:
        yield http


def signed(private: Any, alg: str, kid: str, **overrides: Any) -> dict[str, str]:
    body = {k: v for k, v in (claims(iss=ISSUER, aud=AUDIENCE) | overrides).items() if v is not None}
    return {"Authorization": f"Bearer {jwt.encode(body, private, alg, headers={'kid': kid})}"}


async def test_jwks_accepts_rs256_and_es256_with_issuer_and_audience(
    jwks_api: httpx.AsyncClient,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    clean_db: AsyncEngine,
) -> None:
    assert (await jwks_api.get(STATUS, headers=signed(rsa_key, "RS256", "rsa-1"))).status_code == 404
    assert (await jwks_api.get(STATUS, headers=signed(ec_key, "ES256", "ec-1", sub="bob"))).status_code == 404
    listed = signed(rsa_key, "RS256", "rsa-1", aud=["other", AUDIENCE])
    assert (await jwks_api.get(STATUS, headers=listed)).status_code == 404
    cognito_access = signed(rsa_key, "RS256", "rsa-1", aud=None, client_id=AUDIENCE, sub="carol")
    assert (await jwks_api.get(STATUS, headers=cognito_access)).status_code == 404
    async with clean_db.connect() as conn:
        rows = (await conn.execute(select(User.issuer, User.subject))).all()
    assert sorted(rows) == [(ISSUER, "alice"), (ISSUER, "bob"), (ISSUER, "carol")]


async def test_jwks_rejects_wrong_issuer_audience_signature_and_kid(
    jwks_api: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for headers in (
        signed(rsa_key, "RS256", "rsa-1", iss="https://evil.example"),
        signed(rsa_key, "RS256", "rsa-1", iss=None),
        signed(rsa_key, "RS256", "rsa-1", aud="another-client"),
        signed(rsa_key, "RS256", "rsa-1", aud=None, client_id="another-client"),
        signed(rsa_key, "RS256", "rsa-1", aud=None),
        signed(stranger, "RS256", "rsa-1"),
        signed(rsa_key, "RS256", "unknown-kid"),
        signed(ec_key, "ES256", "rsa-1"),
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Bearer " + jwt.encode(claims(iss=ISSUER, aud=AUDIENCE), rsa_key, "RS256")},
    ):
        assert_error(await jwks_api.get(STATUS, headers=headers), 401, "UNAUTHORIZED")
    expired = signed(rsa_key, "RS256", "rsa-1", exp=int(time.time()) - 300)
    assert_error(await jwks_api.get(STATUS, headers=expired), 401, "TOKEN_EXPIRED")


async def test_jwks_mode_refuses_hs256_none_and_algorithm_confusion(
    jwks_api: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = claims(iss=ISSUER, aud=AUDIENCE)
    confusion = raw_token({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, body, hmac_key=public_pem)
    plain_hs = jwt.encode(body, DEV_JWT_SECRET, "HS256", headers={"kid": "rsa-1"})
    none = raw_token({"alg": "none", "kid": "rsa-1"}, body)
    for token in (confusion, plain_hs, none):
        assert_error(
            await jwks_api.get(STATUS, headers={"Authorization": f"Bearer {token}"}), 401, "UNAUTHORIZED"
        )


async def test_jwks_keys_cache_for_ten_minutes_and_refresh_unknown_kids_once_a_minute(
    jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    now = [1000.0]
    async with httpx.AsyncClient() as http:
        keys = JwksKeys(jwks_server.url, http, clock=lambda: now[0])
        assert (await keys.get("rsa-1")) is not None
        assert jwks_server.fetches == 1
        now[0] += 30
        assert await keys.get("rotated") is None  # fetched 30 s ago: no refresh yet
        assert jwks_server.fetches == 1
        rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwks_server.publish(("rotated", rotated, "RS256"))
        now[0] += 31
        assert await keys.get("rotated") is not None  # 61 s after the last fetch: one refresh
        assert jwks_server.fetches == 2
        now[0] += 10
        assert await keys.get("never") is None
        assert await keys.get("never") is None
        assert jwks_server.fetches == 2
        now[0] += 589
        assert await keys.get("rotated") is not None  # still cached (599 s after the fetch)
        assert jwks_server.fetches == 2
        now[0] += 1
        assert await keys.get("rotated") is not None  # 600 s: the set is refreshed
        assert jwks_server.fetches == 3


async def test_jwks_outage_keeps_previous_keys(jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    now = [0.0]
    async with httpx.AsyncClient() as http:
        keys = JwksKeys(jwks_server.url, http, clock=lambda: now[0])
        assert await keys.get("rsa-1") is not None
        jwks_server.httpd.shutdown()
        jwks_server.httpd.server_close()
        now[0] += 700
        assert await keys.get("rsa-1") is not None
        broken = JwksKeys(jwks_server.url, http, clock=lambda: now[0])
        assert await broken.get("rsa-1") is None


async def test_user_directory_caches_for_five_minutes(clean_db: AsyncEngine) -> None:
    now = [0.0]
    directory = UserDirectory(clean_db, max_entries=2, clock=lambda: now[0])
    alice = Identity("iss", "alice")
    first = await directory.user_id(alice)

    async def forget(subject: str) -> None:
        async with clean_db.begin() as conn:
            await conn.execute(text("DELETE FROM users WHERE subject = :s"), {"s": subject})

    await forget("alice")
    now[0] += 299
    assert await directory.user_id(alice) == first  # served from the cache
    now[0] += 1
    second = await directory.user_id(alice)  # expired: provisioned again
    assert second != first
    await directory.user_id(Identity("iss", "bob"))
    await forget("alice")
    await directory.user_id(Identity("iss", "carol"))  # the cache was full: cleared
    assert await directory.user_id(alice) not in (first, second)
