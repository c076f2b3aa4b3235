"""The verified-token cache of api.auth: a hit skips the decoder, never the expiry; refusals are not kept."""

from __future__ import annotations

import pytest

from api.auth import CachingVerifier, ClaimRules, auth_error
from db.users import Identity
from domain.errors import AppError, ErrorCode

ALICE = Identity("", "alice")
LEEWAY = 30


class CountingDecoder:
    def __init__(self, exp: float) -> None:
        self.exp = exp
        self.calls = 0
        self.refuse = False

    async def decode(self, token: str) -> tuple[Identity, float]:
        self.calls += 1
        if self.refuse:
            raise auth_error()
        return ALICE, self.exp


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def verifier(
    decoder: CountingDecoder, clock: Clock, ttl: float = 60.0, max_entries: int = 10
) -> CachingVerifier:
    rules = ClaimRules(LEEWAY, None, None, 86_400)
    return CachingVerifier(decoder, rules, ttl_seconds=ttl, max_entries=max_entries, clock=clock)


async def test_a_token_is_decoded_once_within_the_ttl_and_again_after_it() -> None:
    clock = Clock()
    decoder = CountingDecoder(exp=clock.now + 3600)
    cache = verifier(decoder, clock)
    assert await cache.verify("t") == ALICE
    clock.now += 59
    assert await cache.verify("t") == ALICE
    assert decoder.calls == 1
    clock.now += 2
    assert await cache.verify("t") == ALICE
    assert decoder.calls == 2


async def test_a_cached_token_past_its_expiry_is_token_expired() -> None:
    clock = Clock()
    decoder = CountingDecoder(exp=clock.now + 10)
    cache = verifier(decoder, clock)
    await cache.verify("t")
    clock.now += 10 + LEEWAY - 1
    assert await cache.verify("t") == ALICE  # still inside the leeway
    clock.now += 1
    with pytest.raises(AppError) as refused:
        await cache.verify("t")
    assert refused.value.code is ErrorCode.TOKEN_EXPIRED
    assert decoder.calls == 1


async def test_refusals_are_not_remembered_and_the_cache_is_bounded() -> None:
    clock = Clock()
    decoder = CountingDecoder(exp=clock.now + 3600)
    decoder.refuse = True
    cache = verifier(decoder, clock, max_entries=2)
    for _ in range(2):
        with pytest.raises(AppError):
            await cache.verify("bad")
    assert decoder.calls == 2
    decoder.refuse = False
    for token in ("a", "b", "c", "a"):
        await cache.verify(token)
    assert decoder.calls == 2 + 4  # "c" cleared the full cache, so "a" was decoded again
