"""Brute-force protection of the API's basic auth: back-off per user name and per address."""

from __future__ import annotations

import pytest

from smsd.api.auth import PEER_MAX_WAIT_S, USER_MAX_WAIT_S, Authenticator, LoginThrottled
from smsd.api.backoff import FREE_FAILURES, FailureBackoff
from smsd.core.directory import Directory
from tests.api.conftest import PASSWORD, Api, basic


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestFailureBackoff:
    def test_free_failures_then_doubling_waits_up_to_the_cap(self) -> None:
        """The first FREE_FAILURES cost nothing; then 1, 2, 4 ... s, never above the cap."""
        clock = Clock()
        b = FailureBackoff(max_wait_s=10.0, clock=clock)
        assert [b.failed("k") for _ in range(FREE_FAILURES)] == [0.0] * FREE_FAILURES
        assert b.wait_s("k") == 0.0
        assert [b.failed("k") for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
        assert b.wait_s("k") == 10.0
        clock.now += 4
        assert b.wait_s("k") == 6.0
        assert b.wait_s("other") == 0.0

    def test_success_clears_and_old_failures_are_forgotten(self) -> None:
        """A success resets the key; failures long ago no longer count."""
        clock = Clock()
        b = FailureBackoff(max_wait_s=10.0, forget_s=100.0, clock=clock)
        for _ in range(FREE_FAILURES + 1):
            b.failed("k")
        assert b.wait_s("k") > 0
        b.succeeded("k")
        assert b.wait_s("k") == 0.0
        for _ in range(FREE_FAILURES):
            b.failed("k")
        clock.now += 101
        assert b.failed("k") == 0.0  # the earlier ones were forgotten

    def test_memory_is_bounded(self) -> None:
        """A flood of distinct keys keeps at most max_keys, dropping the least recent."""
        b = FailureBackoff(max_wait_s=10.0, free=0, max_keys=3, clock=Clock())
        for i in range(10):
            b.failed(f"user{i}")
        assert len(b._entries) == 3
        assert b.wait_s("user9") > 0 and b.wait_s("user0") == 0.0


class TestAuthenticatorBackoff:
    async def test_one_user_from_many_addresses_waits(self, api: Api) -> None:
        """Failures for alice from two addresses add up; then even her right password waits."""
        clock = Clock()
        auth = Authenticator(Directory(api.services.config), clock=clock)
        for i in range(FREE_FAILURES + 1):
            assert await auth.login("alice", "guess", ("127.0.0.1", "::1")[i % 2]) is None
        with pytest.raises(LoginThrottled) as info:
            await auth.login("alice", PASSWORD, "::1")
        assert info.value.status == 429 and info.value.retry_after == 1
        clock.now += USER_MAX_WAIT_S
        assert await auth.login("alice", PASSWORD, "::1") is not None
        # the success cleared alice: one more failure is free again
        assert await auth.login("alice", "guess", "::1") is None
        assert await auth.login("alice", PASSWORD, "::1") is not None

    async def test_one_address_spraying_names_waits(self, api: Api) -> None:
        """Failures for many user names from one address make that address wait."""
        clock = Clock()
        auth = Authenticator(Directory(api.services.config), clock=clock)
        for i in range(FREE_FAILURES + 1):
            assert await auth.login(f"name{i}", "guess", "127.0.0.1") is None
        with pytest.raises(LoginThrottled):
            await auth.login("alice", PASSWORD, "127.0.0.1")
        assert await auth.login("alice", PASSWORD, "::1") is not None
        clock.now += PEER_MAX_WAIT_S
        assert await auth.login("alice", PASSWORD, "127.0.0.1") is not None

    async def test_throttled_attempts_check_no_password(self, api: Api) -> None:
        """While a key waits, no scrypt runs: guessing costs the daemon nothing."""
        calls: list[str] = []

        def counting(password: str, encoded: str) -> bool:
            calls.append(password)
            return False

        auth = Authenticator(Directory(api.services.config), verify_fn=counting, clock=Clock())
        for _ in range(FREE_FAILURES + 1):
            await auth.login("alice", "guess", "127.0.0.1")
        checked = len(calls)
        for _ in range(20):
            with pytest.raises(LoginThrottled):
                await auth.login("alice", "guess", "127.0.0.1")
        assert len(calls) == checked


class TestHttpBackoff:
    async def test_a_header_verified_before_still_waits(self, api: Api) -> None:
        """A client whose right header was verified before is still made to wait while
        its user name is in back-off (429, nothing checked), like any other."""
        url = api.base + "/api/v1/sms"
        async with api.session.get(url, headers=api.auth) as r:
            assert r.status == 200
        bad = {"Authorization": basic("alice", "guess")}
        for _ in range(FREE_FAILURES + 1):
            async with api.session.get(url, headers=bad) as r:
                assert r.status == 401
        async with api.session.get(url, headers=api.auth) as r:
            assert r.status == 429

    async def test_api_answers_429_with_retry_after(self, api: Api) -> None:
        """Over HTTP: 401 for the free failures, then 429 + Retry-After, also for the right
        password, and the originate API keeps its own JSON shape."""
        bad = {"Authorization": basic("alice", "guess")}
        for _ in range(FREE_FAILURES + 1):
            async with api.session.get(api.base + "/api/v1/sms", headers=bad) as r:
                assert r.status == 401
        async with api.session.get(api.base + "/api/v1/sms", headers=api.auth) as r:
            assert r.status == 429
            assert int(r.headers["Retry-After"]) >= 1
            assert "too many failed logins" in (await r.json())["error"]
        async with api.session.post(api.base + "/api/v1/originate/sms", headers=api.auth,
                                    data={"number": "+447700900123", "message": "x"}) as r:
            assert r.status == 429
            body = await r.json()
            assert body["type"] == "error" and "Too many failed logins" in body["reason"]
        assert await api.count_messages() == 0
