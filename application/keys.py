"""Master key rotation: re-wrap every data key, never touching an event."""

from __future__ import annotations

import structlog

from application.event_log import EventLog
from application.personal_data import MasterKey

logger = structlog.get_logger(__name__)


class KeyManagement:
    def __init__(self, log: EventLog) -> None:
        self.log = log

    @property
    def master_key_id(self) -> str:
        return self.log.vault.master.key_id

    def rotate(self, new_master: MasterKey) -> int:
        """Re-wrap under ``new_master`` (in one transaction); returns how many keys moved.

        Afterwards only ``new_master`` opens personal data: restart every server
        with it before destroying the old key.
        """
        old_id = self.master_key_id
        count = self.log.vault.rotate(new_master)
        logger.info("master_key_rotated", from_key=old_id, to_key=new_master.key_id, keys=count)
        return count
