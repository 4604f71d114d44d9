"""The signed-message rules on their own: window, forgery, replay."""

from __future__ import annotations

import time

import pytest

from nekzus.federation import crypto


def test_signature_window_replay_and_forgery() -> None:
    key = crypto.derive_key("a" * 40)
    verifier = crypto.Verifier(key)
    digest = crypto.body_digest(b"{}")
    headers = crypto.sign_request(key, peer_id="nexus_aaaaaaaaaaaa", method="POST", path="/x", digest=digest)
    assert verifier.verify(headers, method="POST", path="/x", digest=digest) == "nexus_aaaaaaaaaaaa"
    with pytest.raises(crypto.AuthFailure) as replay:
        verifier.verify(headers, method="POST", path="/x", digest=digest)
    assert replay.value.reason == "replayed"
    for tamper in ({"path": "/y"}, {"method": "PUT"}, {"digest": crypto.body_digest(b"[]")}):
        fresh = crypto.sign_request(
            key, peer_id="nexus_aaaaaaaaaaaa", method="POST", path="/x", digest=digest
        )
        args = {"method": "POST", "path": "/x", "digest": digest, **tamper}
        with pytest.raises(crypto.AuthFailure) as bad:
            verifier.verify(fresh, **args)
        assert bad.value.reason == "bad_signature"
    other = crypto.sign_request(
        crypto.derive_key("b" * 40), peer_id="p", method="POST", path="/x", digest=digest
    )
    with pytest.raises(crypto.AuthFailure):
        verifier.verify(other, method="POST", path="/x", digest=digest)
    old = crypto.sign_request(key, peer_id="p", method="POST", path="/x", digest=digest, ts=time.time() - 120)
    with pytest.raises(crypto.AuthFailure) as expired:
        verifier.verify(old, method="POST", path="/x", digest=digest)
    assert expired.value.reason == "expired"
    with pytest.raises(crypto.AuthFailure):
        verifier.verify({}, method="POST", path="/x", digest=digest)


def test_reply_signature_is_bound_to_the_request_nonce() -> None:
    key = crypto.derive_key("a" * 40)
    sig = crypto.sign_reply(key, nonce="n1", responder="r", body=b"ok")
    assert crypto.verify_reply(key, nonce="n1", responder="r", body=b"ok", signature=sig)
    assert not crypto.verify_reply(key, nonce="n2", responder="r", body=b"ok", signature=sig)
    assert not crypto.verify_reply(key, nonce="n1", responder="r", body=b"changed", signature=sig)
