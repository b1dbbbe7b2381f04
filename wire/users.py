"""DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554), mapped onto the
controller's SCRAM credentials (actors/security_metadata.py).

As in Kafka, the client sends the salt and the *salted* password (never the password);
the listener derives ``StoredKey``/``ServerKey`` from them here and stores only those.
Send these over ``SASL_SSL``: the salted password lets whoever reads it log in.
Describe needs DESCRIBE on the cluster, Alter needs ALTER (else
CLUSTER_AUTHORIZATION_FAILED for each user). Alter answers one result per user:
UNSUPPORTED_SASL_MECHANISM, UNACCEPTABLE_CREDENTIAL (iterations outside 4096..16384,
an empty salt), DUPLICATE_RESOURCE (a user altered twice for one mechanism),
RESOURCE_NOT_FOUND (deleting what is not there). Describe answers RESOURCE_NOT_FOUND for
a named user without credentials.
"""

from __future__ import annotations

from typing import Any

from rafka.security import scram
from rafka.security.acl import CLUSTER_NAME
from rafka.wire import protocol

E = protocol.error_code
MECHANISM_CODES = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
MECHANISM_NAMES = {code: name for name, code in MECHANISM_CODES.items()}


class UserApis:
    def __init__(self, apis: Any) -> None:
        self.apis = apis
        self.handlers = {50: self.describe_user_scram_credentials, 51: self.alter_user_scram_credentials}

    async def describe_user_scram_credentials(self, header: protocol.RequestHeader, request: Any) -> Any:
        data: dict = {"throttle_time": 0, "error_code": 0, "error_message": None, "results": []}
        if not self.apis.security.allowed("describe", "cluster", CLUSTER_NAME):
            data.update(error_code=E("cluster_authorization_failed"),
                        error_message="describe on the cluster is not allowed")
        else:
            names = None if request.users is None else [user.name for user in request.users]
            found = await self.apis._controller().describe_scram_credentials.remote(names)
            for user in (sorted(found) if names is None else names):
                if user in found:
                    data["results"].append({"user": user, "error_code": 0, "error_message": None, "credential_infos": [
                        {"mechanism": MECHANISM_CODES[m], "iterations": i} for m, i in found[user]]})
                else:
                    data["results"].append({"user": user, "error_code": E("resource_not_found"),
                                            "error_message": f"user {user!r} has no SCRAM credential",
                                            "credential_infos": ()})
        return protocol.build(protocol.response_class(50, header.api_version), data)

    async def alter_user_scram_credentials(self, header: protocol.RequestHeader, request: Any) -> Any:
        users = list(dict.fromkeys([d.name for d in request.deletions] + [u.name for u in request.upsertions]))
        errors: dict[str, tuple[int, str]] = {}
        if not self.apis.security.allowed("alter", "cluster", CLUSTER_NAME):
            errors = {user: (E("cluster_authorization_failed"), "alter on the cluster is not allowed")
                      for user in users}
        else:
            deletions, upsertions, owners = [], [], []
            for deletion in request.deletions:
                mechanism = MECHANISM_NAMES.get(int(deletion.mechanism))
                if mechanism is None:
                    errors.setdefault(deletion.name, (E("unsupported_sasl_mechanism"),
                                                      f"unknown SCRAM mechanism {int(deletion.mechanism)}"))
                    continue
                deletions.append([deletion.name, mechanism])
                owners.append(deletion.name)
            for upsertion in request.upsertions:
                mechanism = MECHANISM_NAMES.get(int(upsertion.mechanism))
                if mechanism is None:
                    errors.setdefault(upsertion.name, (E("unsupported_sasl_mechanism"),
                                                       f"unknown SCRAM mechanism {int(upsertion.mechanism)}"))
                    continue
                try:
                    scram.validate_iterations(int(upsertion.iterations))
                    if not upsertion.salt or not upsertion.salted_password:
                        raise ValueError("salt and salted password must not be empty")
                    stored_key, server_key = scram.keys_from_salted_password(bytes(upsertion.salted_password),
                                                                             mechanism)
                except ValueError as error:
                    errors.setdefault(upsertion.name, (E("unacceptable_credential"), str(error)))
                    continue
                upsertions.append([upsertion.name, {"mechanism": mechanism, "salt": bytes(upsertion.salt),
                                                    "iterations": int(upsertion.iterations),
                                                    "stored_key": stored_key, "server_key": server_key}])
                owners.append(upsertion.name)
            if deletions or upsertions:
                results = await self.apis._controller().alter_scram_credentials.remote(upsertions, deletions)
                # The controller answers deletions first, then upsertions: the order of ``owners``.
                for user, result in zip(owners, results):
                    if result is not None:
                        errors.setdefault(user, (E(result[0]), result[1]))
                await self.apis.security.refresh(force=True)
        return protocol.build(protocol.response_class(51, header.api_version), {"throttle_time": 0, "results": [
            {"user": user, "error_code": errors.get(user, (0, None))[0], "error_message": errors.get(user, (0, None))[1]}
            for user in users]})

