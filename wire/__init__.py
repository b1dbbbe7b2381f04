"""Kafka's wire protocol on every broker (``rafka.wire``): any Kafka client or tool
(librdkafka and everything built on it, kcat, aiokafka, kafka-python, the Java client)
talks to rafka through it.

Modules: ``server`` (the asyncio listener, framing, limits), ``protocol`` (request and
response framing with ``kio``'s schemas; the APIs and versions answered), ``handlers``
(each request mapped onto the replica and controller actors), ``records`` (Kafka
RecordBatch v2 to and from Arrow), ``config`` (listeners, ports and hosts), ``tls``,
``security`` (SASL and the ACL checks), ``acls`` (CreateAcls, DescribeAcls,
DeleteAcls). See docs/wire.md and docs/security.md.
"""
