"""Authentication and authorization of the Kafka wire listener (``rafka.security``).

Pure Python, no Ray: ``scram`` (salted SCRAM credentials, RFC 5802/7677, and the
server side of SASL/SCRAM and SASL/PLAIN), ``acl`` (ACL bindings, filters and the
authorizer). The credentials and ACLs themselves live in the controller's replicated
metadata (actors/metadata_store.py); the wire listener (``rafka.wire``) asks the
controller for them. See docs/security.md.
"""
