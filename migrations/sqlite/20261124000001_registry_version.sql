-- A counter of registry changes, bumped in each change's transaction: replicas compare it with
-- the changes they have heard of (see registry/follow.rs).
CREATE TABLE registry_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO registry_version (id, version) VALUES (1, 0);
