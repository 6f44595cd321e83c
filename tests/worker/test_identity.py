"""The proof itself (domain.identity): what it binds, how old it may be, which keys verify it."""

from __future__ import annotations

import pytest

from domain.identity import (
    IdentityKeyError,
    Keyring,
    Principal,
    keyring_from_env,
    parse_key,
    person,
)
from domain.incident import Decision

KEY = "k1:" + "a" * 32
NOW = 1_800_000_000.0


def _signed(ring: Keyring, d: Decision, wid: str = "INC-1", handler: str = "decide", at: float = NOW):
    return ring.sign(wid, handler, [d], Principal(name="alice", roles=["commander"]), at)


def test_a_proof_verifies_only_for_its_workflow_handler_payload_and_time():
    ring = Keyring([parse_key(KEY)])
    d = Decision(action_id="rollback", approve=True, by="alice")
    p = _signed(ring, d)
    assert ring.problem(p, "INC-1", "decide", [d], NOW + 10) is None
    assert "made for INC-1, not INC-2" in (ring.problem(p, "INC-2", "decide", [d], NOW) or "")
    assert "made for decide, not approve" in (ring.problem(p, "INC-1", "approve", [d], NOW) or "")
    other = d.model_copy(update={"action_id": "scale"})
    assert "payload differs" in (ring.problem(p, "INC-1", "decide", [other], NOW) or "")
    assert "301 s old (limit 300 s)" in (ring.problem(p, "INC-1", "decide", [d], NOW + 301) or "")
    assert "in the future" in (ring.problem(p, "INC-1", "decide", [d], NOW - 400) or "")
    assert ring.problem(p, "INC-1", "decide", [d], None) is None  # a signal: no freshness check
    forged = p.model_copy(update={"actor": "mallory"})
    assert "does not verify" in (ring.problem(forged, "INC-1", "decide", [d], NOW) or "")


def test_rotation_keeps_old_keys_verifying_and_forgets_removed_ones():
    old, new = parse_key("old:" + "o" * 20), parse_key("new:" + "n" * 20)
    d = Decision(action_id="rollback", approve=True, by="alice")
    p = _signed(Keyring([old]), d)
    assert Keyring([new, old]).problem(p, "INC-1", "decide", [d], NOW) is None
    assert "unknown to this worker" in (Keyring([new]).problem(p, "INC-1", "decide", [d], NOW) or "")
    assert _signed(Keyring([new, old]), d).kid == "new"  # the current key signs


def test_keys_from_the_environment(tmp_path):
    f = tmp_path / "keys"
    f.write_text("cur:" + "c" * 20 + "\nold:" + "o" * 20 + "\n")
    ring = keyring_from_env({"CODEBLUE_OPERATOR_KEY_FILE": str(f), "CODEBLUE_PROOF_MAX_AGE_SECONDS": "0"})
    assert [k for k, _ in ring.keys] == ["cur", "old"] and ring.max_age is None
    ring = keyring_from_env({"CODEBLUE_OPERATOR_KEY": "x" * 20, "CODEBLUE_OPERATOR_OLD_KEYS": "a:" + "y" * 20})
    assert len(ring.keys) == 2 and ring.max_age == 300
    assert not keyring_from_env({}).can_sign
    with pytest.raises(IdentityKeyError, match="at least 16"):
        keyring_from_env({"CODEBLUE_OPERATOR_KEY": "short"})
    with pytest.raises(IdentityKeyError, match="expected seconds"):
        keyring_from_env({"CODEBLUE_OPERATOR_KEY": "x" * 20, "CODEBLUE_PROOF_MAX_AGE_SECONDS": "soon"})


def test_an_operator_key_name_is_the_person_for_authority():
    assert person("alice (operator key)") == "alice"
    assert person("alice") == "alice" and person(None) == "" and person("(unverified)") == "(unverified)"
    assert Principal(name="alice", via="operator key").display == "alice (operator key)"
    assert Principal(name="root", via="operator key").is_admin and not Principal(name="bob").is_admin
