"""The controller's part in wire-listener security: SCRAM credentials and ACLs kept in
its replicated metadata (records ``alter_scram_credentials``, ``create_acls``,
``delete_acls`` of actors/metadata_store.py), so every broker's listener sees the same
users and ACLs, and they survive controller restarts.

``SecurityMetadata`` is mixed into ``Controller`` (it uses ``self.store`` and
``self._mutex``). Every change is validated in full before its record is written; a
call either applies all its valid items as one record or, for ACL creation, none.
Brokers read ``security_state()`` (they cache it briefly, wire/security.py); nothing
here stores a password, only ``rafka.security.scram`` credentials. See docs/security.md.
"""

from __future__ import annotations

import asyncio
import logging

from rafka.security.acl import AclBinding, AclFilter
from rafka.security.scram import validate_credential, validate_user

logger = logging.getLogger(__name__)

# Bounds on one call, so a request cannot make one giant metadata record.
ITEMS_PER_CALL_MAX = 1000
BROKER_NOTICE_TIMEOUT_S = 5.0


async def _await(ref):
    return await ref


class SecurityMetadata:
    async def _security_changed(self) -> None:
        """Tell every alive broker to reload credentials and ACLs before this call
        returns; one that does not answer in time reloads within its cache time anyway."""
        async def notify(broker_id: int) -> None:
            await asyncio.wait_for(_await(self._broker(broker_id).security_changed.remote()), BROKER_NOTICE_TIMEOUT_S)

        for result in await asyncio.gather(*(notify(b) for b in self._alive()), return_exceptions=True):
            if isinstance(result, BaseException):
                logger.info("controller: a broker missed a security change notice: %r", result)

    def security_state(self) -> dict:
        """{"scram_credentials": user -> mechanism -> credential, "acls": [binding dict]}."""
        return {"scram_credentials": self.store.state["scram_credentials"], "acls": self.store.state["acls"]}

    async def alter_scram_credentials(self, upsertions: list, deletions: list) -> list[tuple[str, str] | None]:
        """Apply ``deletions`` ([user, mechanism]) and ``upsertions`` ([user, credential
        dict]) as one record. Returns, per deletion then per upsertion, None or (Kafka
        error name, message); failed items are left out of the record."""
        if len(upsertions) + len(deletions) > ITEMS_PER_CALL_MAX:
            raise ValueError(f"at most {ITEMS_PER_CALL_MAX} credential changes per call, got "
                             f"{len(upsertions) + len(deletions)}")
        async with self._mutex():
            existing = self.store.state["scram_credentials"]
            results, good_deletions, good_upsertions, touched = [], [], [], set()
            for user, mechanism in deletions:
                if (user, mechanism) in touched:
                    results.append(("duplicate_resource", f"user {user!r} is altered twice in one request"))
                elif mechanism not in existing.get(user, {}):
                    results.append(("resource_not_found", f"user {user!r} has no {mechanism} credential"))
                else:
                    touched.add((user, mechanism))
                    good_deletions.append([user, mechanism])
                    results.append(None)
            for user, credential in upsertions:
                try:
                    validate_user(user)
                    stored = validate_credential(credential)
                except ValueError as error:
                    results.append(("unacceptable_credential", str(error)))
                    continue
                if (user, stored["mechanism"]) in touched:
                    results.append(("duplicate_resource", f"user {user!r} is altered twice in one request"))
                    continue
                touched.add((user, stored["mechanism"]))
                good_upsertions.append([user, stored])
                results.append(None)
            if good_deletions or good_upsertions:
                await self.store.apply({"type": "alter_scram_credentials", "deletions": good_deletions,
                                  "upsertions": good_upsertions})
        await self._security_changed()
        return results

    def describe_scram_credentials(self, users: list[str] | None = None) -> dict[str, list[tuple[str, int]]]:
        """user -> [(mechanism, iterations)]; users without credentials are left out."""
        credentials = self.store.state["scram_credentials"]
        wanted = sorted(credentials) if users is None else users
        return {user: [(mechanism, stored["iterations"]) for mechanism, stored in sorted(credentials[user].items())]
                for user in wanted if user in credentials}

    async def create_acls(self, bindings: list[dict]) -> None:
        """Add ``bindings`` (AclBinding dicts); one that does not validate refuses the
        whole call with ValueError naming it. Bindings already present are kept once."""
        if len(bindings) > ITEMS_PER_CALL_MAX:
            raise ValueError(f"at most {ITEMS_PER_CALL_MAX} ACLs per call, got {len(bindings)}")
        checked = [AclBinding.from_dict(binding).to_dict() for binding in bindings]
        async with self._mutex():
            await self.store.apply({"type": "create_acls", "bindings": checked})
        await self._security_changed()

    def describe_acls(self, acl_filter: dict) -> list[dict]:
        selector = AclFilter.from_dict(acl_filter)
        return [binding for binding in self.store.state["acls"] if selector.matches(binding)]

    async def delete_acls(self, filters: list[dict]) -> list[list[dict]]:
        """Remove every binding any of ``filters`` (AclFilter dicts) matches, as one
        record; returns the bindings each filter matched."""
        if len(filters) > ITEMS_PER_CALL_MAX:
            raise ValueError(f"at most {ITEMS_PER_CALL_MAX} ACL filters per call, got {len(filters)}")
        selectors = [AclFilter.from_dict(acl_filter) for acl_filter in filters]
        async with self._mutex():
            matched = [[b for b in self.store.state["acls"] if selector.matches(b)] for selector in selectors]
            removed = [b for b in self.store.state["acls"] if any(b in found for found in matched)]
            if removed:
                await self.store.apply({"type": "delete_acls", "bindings": removed})
        await self._security_changed()
        return matched
