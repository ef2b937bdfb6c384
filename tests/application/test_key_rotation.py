"""Master key rotation re-wraps data keys and never touches an event."""

from __future__ import annotations

import pytest

from application.personal_data import MasterKey, MasterKeyError
from application.service import Accord
from tests.builders import CTX, register_customer
from tests.conftest import AccordFactory


def _stored_events(app: Accord) -> list[tuple[object, ...]]:
    return [
        (n.id, n.originator_id, n.originator_version, n.topic, n.state)
        for n in app.log.recorder.select_notifications(start=1, limit=1000)
    ]


def test_after_rotation_only_the_new_master_key_opens_personal_data(
    make_accord: AccordFactory, master_key: MasterKey
) -> None:
    app = make_accord()
    customer_id = app.customers.register(
        register_customer(display_name="Rotated Ltd"), CTX
    ).aggregate_id
    before = _stored_events(app)
    new_key = MasterKey.generate()

    assert app.keys.rotate(new_key) == 1

    assert _stored_events(app) == before
    assert app.queries.customer(customer_id).display_name == "Rotated Ltd"
    assert make_accord(key=new_key).queries.customer(customer_id).display_name == "Rotated Ltd"
    with pytest.raises(ValueError, match="master key"):
        make_accord(key=master_key).queries.customer(customer_id)


def test_a_master_key_is_32_bytes_of_base64() -> None:
    with pytest.raises(MasterKeyError):
        MasterKey.from_base64("not base64!")
    with pytest.raises(MasterKeyError):
        MasterKey.from_base64("c2hvcnQ=")
    key = MasterKey.generate()
    assert MasterKey.from_base64(key.to_base64()) == key
    assert key.to_base64() not in repr(key)


def test_a_master_key_that_did_not_wrap_the_stored_data_keys_is_refused_at_start(
    make_accord: AccordFactory, master_key: MasterKey
) -> None:
    fresh = make_accord(key=MasterKey.generate())  # no personal data yet: any key will do
    fresh.customers.register(register_customer(), CTX)
    fresh.close()

    stranger = MasterKey.generate()
    with pytest.raises(MasterKeyError) as refused:
        make_accord(key=stranger)

    assert stranger.key_id in str(refused.value)
    assert "ACCORD_MASTER_KEY" in str(refused.value)
    assert stranger.to_base64() not in str(refused.value)
