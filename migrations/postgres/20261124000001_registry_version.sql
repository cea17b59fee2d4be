-- A counter of registry changes, bumped in each change's transaction: replicas compare it with
-- the changes they have heard of (see registry/follow.rs). Its row lock also puts the registry
-- writes of all replicas in one order, the order their notices are delivered in.
CREATE TABLE registry_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO registry_version (id, version) VALUES (1, 0);
